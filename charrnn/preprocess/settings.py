"""What one preprocessing run is asked to do (the flags of ``python -m charrnn.preprocess``), checked
before anything is read or written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from charrnn.errors import UsageError
from charrnn.files import check_readable, empty_file
from charrnn.vocab import Vocab

# ``--unknown``: with ``--vocab``, what becomes of the text's characters outside it. ``drop`` leaves them out of
# the encoded text (counted and reported; their case is not swapped, unlike a prime's), ``error`` refuses the file.
UnknownPolicy = Literal["drop", "error"]
PATH_FLAGS = {"input_txt": "--input_txt", "output_h5": "--output_h5", "output_json": "--output_json"}


class PreprocessError(UsageError):
    """A bad input or output named by its flag; the message says what to do."""


@dataclass(frozen=True)
class PreprocessSettings:
    """The options of one run; the paths may be given as strings.

    Args:
        input_txt: the text file.
        output_h5: datasets ``train``, ``val``, ``test`` of 1-based indices (uint8 if ≤255 tokens).
        output_json: ``token_to_idx`` and ``idx_to_token``.
        val_frac: fraction of the characters for validation (taken after train).
        test_frac: fraction for test (taken last).
        encoding: a Python codec name (``utf-8``) or ``bytes`` for one token per byte.
        vocab: reuse this vocabulary (e.g. to fine-tune a model) instead of building one.
        unknown: with ``vocab``, ``drop`` leaves out the characters outside it (reported with counts),
            ``error`` refuses the file.
        quiet: print nothing.
        workers: processes that read parts of the file side by side (default: one per available
            core, up to 8); a file gets at most one per ``parts.MIN_PART_BYTES``. The output does not
            depend on it.
    """

    input_txt: Path
    output_h5: Path
    output_json: Path
    val_frac: float = 0.1
    test_frac: float = 0.1
    encoding: str = "utf-8"
    vocab: Vocab | None = None
    unknown: UnknownPolicy = "drop"
    quiet: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        for name, flag in PATH_FLAGS.items():
            if not os.fspath(getattr(self, name)):  # Path("") would be the current directory
                raise PreprocessError(f"{flag} is empty; give a file name")
            object.__setattr__(self, name, Path(getattr(self, name)))

    def check(self) -> None:
        """Refuses settings that cannot work, and paths that are wrong, before anything is written."""
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise PreprocessError(f"--val_frac {self.val_frac} and --test_frac {self.test_frac} must be ≥0 and sum "
                                  "to less than 1")
        check_encoding(self.encoding)
        if self.unknown not in ("drop", "error"):
            raise PreprocessError(f"--unknown {self.unknown}: choose drop or error")
        if self.workers is not None and self.workers < 1:
            raise PreprocessError(f"--workers {self.workers}: give at least 1")
        check_paths(self.input_txt, self.output_h5, self.output_json)
        if self.vocab is not None and self.vocab.byte_level and self.encoding != "bytes":
            raise PreprocessError("--vocab is a byte vocabulary (tokens like [195]); pass --encoding bytes")


def check_encoding(encoding: str) -> None:
    """Refuses an ``--encoding`` that is neither ``bytes`` nor a text encoding (base64, rot13 and the like are not)."""
    if encoding != "bytes":
        try:
            "".encode(encoding)
        except LookupError:
            raise PreprocessError(f"--encoding {encoding} is not a known text encoding; try utf-8, latin-1 or "
                                  "bytes") from None


def check_paths(input_txt: Path, output_h5: Path, output_json: Path) -> None:
    """Fails before anything is written when a path is wrong."""
    if check_readable(input_txt, "--input_txt", PreprocessError).st_size == 0:
        raise PreprocessError(f"--input_txt {input_txt} {empty_file(input_txt)}; give a text file with at least 2 "
                              "characters")
    for flag, out in (("--output_h5", output_h5), ("--output_json", output_json)):
        if out.exists() and not out.is_file():  # a rename over a directory fails; over /dev/null it replaces it
            raise PreprocessError(f"{flag} {out} is a directory or a device, not a file; give a file name")
        try:
            same = out.resolve() == input_txt.resolve()
        except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symbolic link loop
            raise PreprocessError(f"{flag} {out} is a symbolic link loop; give a file name") from None
        if same:
            raise PreprocessError(f"{flag} {out} is the input file; choose another output path")
        if not out.parent.is_dir():
            raise PreprocessError(f"{flag} {out}: directory {out.parent} does not exist; create it first")
        if not os.access(out.parent, os.W_OK):
            raise PreprocessError(f"{flag} {out}: directory {out.parent} is not writable")
    if output_h5.resolve() == output_json.resolve():
        raise PreprocessError("--output_h5 and --output_json are the same file; give two paths")
