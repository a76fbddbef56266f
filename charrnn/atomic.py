"""Writing a file so that readers only ever see the old complete file or the new complete file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO


def temp_name(target: Path) -> Path:
    """Where ``target`` is staged: a hidden file in the same directory (same filesystem, so the
    final rename is atomic), named after the writing process."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """Makes a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class NoSpaceError(OSError):
    """The disk (or quota) filled up while writing a file; the message names the file."""


class _Remembering:
    """The file as the writer sees it, remembering the OSError of a failed write: torch.save turns
    ENOSPC into an unhelpful ``RuntimeError: ... unexpected pos``."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


def atomic_write(target: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``target``, fsyncs it and renames it over ``target``.
    ``file.name`` is the temporary file's path, for writers that also write it by name (h5py, worker processes).

    A crash or kill at any moment leaves ``target`` as it was (or absent) and never half-written;
    at worst a hidden ``.NAME.tmp-PID`` file remains, which the next write of ``target`` removes
    once that process is gone. A full disk raises NoSpaceError naming ``target``, the partial
    temporary file removed.
    """
    atomic_write_all({target: write})


def atomic_write_all(files: Mapping[str | os.PathLike, Callable[[BinaryIO], None]]) -> None:
    """:func:`atomic_write` of several files that go together: all are written and fsynced first, then
    renamed into place, so an error while writing any of them (a full disk) leaves every target as it was."""
    targets = [Path(t) for t in files]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    try:
        for target, write in zip(targets, files.values(), strict=True):
            staged.append(temp_name(target))
            file: _Remembering | None = None
            try:
                with open(staged[-1], "wb") as f:
                    file = _Remembering(f)
                    write(file)  # type: ignore[arg-type]  (a BinaryIO in all but name)
                    f.flush()
                    os.fsync(f.fileno())
            except Exception as e:
                error = e if isinstance(e, OSError) else file and file.error
                if error is not None and error.errno in (errno.ENOSPC, errno.EDQUOT):
                    full = NoSpaceError(f"no space left writing {target}")
                    full.errno = error.errno
                    raise full from e
                raise
        for target, tmp in zip(targets, staged, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    for directory in dict.fromkeys(t.parent for t in targets):
        fsync_dir(directory)
    for target in targets:
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            if not _alive(stale.name.rpartition("-")[2]):  # left by a killed writer
                stale.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
