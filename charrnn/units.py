"""Reading a text file as units (code points, or byte values), a chunk at a time, for preprocessing.

Most of a typical corpus is ASCII, and in UTF-8 (or with ``--encoding bytes``) an ASCII byte is its own
code point: those runs are handed on as ``bytes``, never decoded, so that preprocessing can search
and map them with ``bytes.translate`` at a few GB/s. Only the runs of other characters are decoded,
into arrays of code points.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHUNK_BYTES = 256 << 10  # bytes read at a time (small enough to stay in cache); memory use is a small multiple of this
MAX_RUNS = 256  # a chunk with more runs of non-ASCII characters is decoded whole
Piece = bytes | np.ndarray  # bytes: one unit per byte; an array: code points (uint32)


class DecodeError(ValueError):
    """The file is not valid in its encoding; ``offset`` is the first bad byte."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"byte {offset} ({reason})")
        self.offset, self.reason = offset, reason


def _code_points(data: bytes, encoding: str, offset: int) -> np.ndarray:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DecodeError(offset + e.start, e.reason) from None
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _utf8_pieces(data: bytes, offset: int) -> list[Piece]:
    """``data`` (whole characters) as ASCII runs and decoded runs of other characters, in order."""
    if data.isascii():
        return [data] if data else []
    high = np.flatnonzero(np.frombuffer(data, np.uint8) >= 0x80)
    breaks = np.flatnonzero(np.diff(high) > 1)
    if len(breaks) >= MAX_RUNS:
        return [_code_points(data, "utf-8", offset)]
    starts = high[np.r_[0, breaks + 1]].tolist()
    ends = (high[np.r_[breaks, len(high) - 1]] + 1).tolist()
    pieces: list[Piece] = []
    pos = 0
    for start, end in zip(starts, ends, strict=True):
        if start > pos:
            pieces.append(data[pos:start])
        pieces.append(_code_points(data[start:end], "utf-8", offset + start))
        pos = end
    if pos < len(data):
        pieces.append(data[pos:])
    return pieces


def _last_character(data: bytes) -> int:
    """Where the last (possibly unfinished) character of UTF-8 ``data`` starts."""
    at = len(data) - 1
    while at > 0 and at > len(data) - 4 and data[at] & 0xC0 == 0x80:  # continuation bytes
        at -= 1
    return at


def read_units(path: Path, encoding: str, chunk_bytes: int | None = None, start: int = 0,
               stop: int | None = None) -> Iterator[list[Piece]]:
    """Yields the bytes ``start:stop`` of a file (all of it by default) as the pieces of one read at
    a time, in order (see the module's docstring). ``start`` must be a character boundary.

    Decoding is strict, with no newline translation (``\\r`` is a character, as in torch-rnn).

    Raises:
        DecodeError: the range is not valid ``encoding``; its offset counts from the start of the file.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    utf8 = encoding != "bytes" and codecs.lookup(encoding).name == "utf-8"
    decoder = None if encoding == "bytes" or utf8 else codecs.getincrementaldecoder(encoding)("strict")
    offset, carry = start, b""  # the file offset of carry, the unfinished character of the last read
    with open(path, "rb") as f:
        f.seek(start)
        pos = start  # the file offset of the next read
        while True:
            raw = f.read(chunk_bytes if stop is None else max(0, min(chunk_bytes, stop - pos)))
            pos += len(raw)
            final = not raw
            if encoding == "bytes":
                if final:
                    return
                yield [raw]
            elif utf8:
                data = carry + raw if carry else raw
                cut = len(data) if final or not data or data[-1] < 0x80 else _last_character(data)
                yield _utf8_pieces(data[:cut], offset)
                if final:
                    return
                offset, carry = offset + cut, data[cut:]
            else:
                assert decoder is not None
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(raw, final=final)
                except UnicodeDecodeError as e:
                    raise DecodeError(offset - pending + e.start, e.reason) from None
                yield [np.frombuffer(text.encode("utf-32-le"), dtype="<u4")] if text else []
                if final:
                    return
                offset += len(raw)
