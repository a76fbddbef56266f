"""The one check of a file the user names before anything opens it.

Opening a named pipe waits for a writer, reading ``/dev/zero`` never ends, and a directory, a socket or a
symbolic link loop fails with an OSError that says little: each is refused here with a line that says
what the path really is. Every path flag of every entry point that charrnn reads goes through
:func:`check_readable` (``--config``, ``--ckpt``, ``--ckpt_path``, ``--model.init_from``, ``--start_file``,
the ``--data.*`` inputs and preprocess's ``--input_txt`` and ``--vocab``).
"""

from __future__ import annotations

import errno
import os
import stat

from charrnn.errors import MissingFileError, UsageError

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO), not a file: reading it would wait for a writer"),
    (stat.S_ISSOCK, "a socket, not a file"),
    (stat.S_ISCHR, "a character device, not a file"),
    (stat.S_ISBLK, "a block device (a disk), not a file"),
)


def check_readable(path: str | os.PathLike, name: str, error: type[UsageError] = UsageError,
                   directory_ok: bool = False, streams_ok: bool = False) -> os.stat_result:
    """The ``os.stat`` of ``path`` once it is known to be a regular file this process may read.

    Args:
        path: the path as the user gave it.
        name: what the message calls it, before the path: a flag (``--start_file``) or a word (``checkpoint``).
        error: the UsageError subclass raised (a missing path raises :class:`MissingFileError` when this is
            UsageError itself).
        directory_ok: a directory passes too (an export's directory).
        streams_ok: a pipe or character device under /dev or /proc passes too (``/dev/stdin``, and the
            ``/dev/fd/N`` of a shell's ``<(command)``), for a reader that reads a bounded amount; a named pipe
            elsewhere is still refused.

    Raises:
        UsageError: one line ``NAME PATH is ...`` that says what the path is and what to give instead.
    """
    text = os.fspath(path)
    if not text:
        raise error(f"{name}: the path is empty; give a file")
    try:
        st = os.stat(text)
    except OSError as e:
        raise _stat_error(text, name, error, e) from None
    if stat.S_ISDIR(st.st_mode):
        if directory_ok:
            return st
        raise error(f"{name} {text} is a directory; give a file")
    stream = stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)
    if streams_ok and stream and os.path.abspath(text).startswith(("/dev/", "/proc/")):
        return st
    for test, what in _KINDS:
        if test(st.st_mode):
            hint = " (a prime from a pipe: --start_file /dev/stdin)" if streams_ok else ""
            raise error(f"{name} {text} is {what}; give a regular file{hint}")
    if not os.access(text, os.R_OK):
        raise error(f"{name} {text} cannot be read (permission denied)")
    return st


def _stat_error(text: str, name: str, error: type[UsageError], e: OSError) -> UsageError:
    if e.errno == errno.ELOOP:
        return error(f"{name} {text} is a symbolic link loop (it never reaches a file); give a file")
    if e.errno == errno.ENOENT and os.path.islink(text):
        return error(f"{name} {text} is a symbolic link to {os.readlink(text)}, which does not exist")
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return (MissingFileError if error is UsageError else error)(f"{name} {text} does not exist")
    if e.errno == errno.EACCES:
        return error(f"{name} {text} cannot be reached (permission denied)")
    return error(f"{name} {text} cannot be read: {e.strerror or e}")


def empty_file(path: str | os.PathLike) -> str:
    """Why a file reports 0 bytes, for a message: a /proc or /sys file always does (its size is not known)."""
    real = os.path.realpath(path)
    return "is a /proc or /sys file (the kernel's, not data)" if real.startswith(("/proc/", "/sys/")) else "is empty"
