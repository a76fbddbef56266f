"""The text file read in pieces of code points (or bytes) for both passes, its decoding errors naming the flag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charrnn.preprocess.settings import PreprocessError
from charrnn.units import DecodeError, Piece, read_units


def unit_space(encoding: str) -> int:
    """How many distinct units a file can hold: bytes, or Unicode code points."""
    return 256 if encoding == "bytes" else 0x110000


def pieces(path: Path, encoding: str, start: int = 0, stop: int | None = None) -> Iterator[Piece]:
    """The pieces of :func:`charrnn.units.read_units`, one by one; decoding errors name the flag."""
    try:
        for chunk in read_units(path, encoding, start=start, stop=stop):
            yield from chunk
    except DecodeError as e:
        raise PreprocessError(f"--input_txt {path} is not valid {encoding} at {e}; fix the file, "
                              "or pass --encoding bytes to model raw bytes") from None
    except UnicodeError as e:  # another codec's own complaint
        raise PreprocessError(f"--input_txt {path} is not valid {encoding} ({e}); pass the file's --encoding, "
                              "or --encoding bytes to model raw bytes") from None


def byte_values(mask: np.ndarray) -> bytes:
    """The byte values (below 256) where ``mask`` is true."""
    return bytes(np.flatnonzero(mask[:256]).astype(np.uint8))
