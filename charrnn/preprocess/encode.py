"""Pass 2: each part of the text encoded chunk by chunk and written with ``os.pwrite`` straight into the
datasets allocated in the .h5, after as many indices as the parts before it hold.

Runs of ASCII are mapped with ``bytes.translate``; with a given vocabulary and ``--unknown drop`` the
units it lacks are left out. What the parts have written is flushed to disk while they go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np

from charrnn.preprocess.reading import byte_values, pieces, unit_space
from charrnn.preprocess.settings import PreprocessError
from charrnn.units import Piece
from charrnn.vocab import Vocab

FLUSH_SECONDS = 0.01  # while encoding, how often what is written so far is flushed to disk
_flush = getattr(os, "fdatasync", os.fsync)  # the file's data, without its times where the system can


@dataclass(frozen=True)
class Span:
    """Where one dataset's elements lie in the .h5 file."""

    first: int  # index of its first element among all the kept units of the file
    size: int
    offset: int | None  # file offset of its data; None when it is empty


@dataclass(frozen=True)
class EncodeJob:
    """Pass 2 for one part of the file: its bytes ``start:stop`` hold the kept units ``first`` to
    ``first + count`` of the whole file."""

    input_txt: Path
    encoding: str
    start: int
    stop: int
    first: int
    count: int
    vocab: Vocab
    leave_out_unknown: bool  # the text has units outside the given vocabulary, which are left out
    output_h5: Path
    spans: tuple[Span, ...]
    dtype: str  # numpy's spelling, byte order included: |u1 or <u4


def write_parts(pool: Pool, jobs: list[EncodeJob], fd: int) -> None:
    """Runs the parts' jobs in ``pool``. Meanwhile what they have written so far to the file open as ``fd`` is
    flushed, so that the disk works while they encode and the final fsync has little left to wait for."""
    pending = [pool.apply_async(encode_part, (job,)) for job in jobs]
    for done in pending:
        while not done.ready():
            _flush(fd)
            done.wait(FLUSH_SECONDS)
        done.get()


def encode_part(job: EncodeJob) -> None:
    """Encodes one part chunk by chunk and writes its indices in place into the allocated datasets."""
    table = job.vocab.lookup_table(unit_space(job.encoding))
    dtype = np.dtype(job.dtype)
    # For byte pieces: the index of each byte value as one byte (when every index fits), and the bytes left out.
    byte_map = table[:256].astype(np.uint8).tobytes() if dtype.itemsize == 1 else None
    unknown_bytes = byte_values(table[:256] == 0) if job.leave_out_unknown else None
    at, end = job.first, job.first + job.count
    fd = os.open(job.output_h5, os.O_WRONLY)
    try:
        for piece in pieces(job.input_txt, job.encoding, job.start, job.stop):
            ids = _indices(piece, table, byte_map, unknown_bytes, dtype)
            if at + len(ids) > end:
                break
            _write(fd, ids, at, job.spans)
            at += len(ids)
    finally:
        os.close(fd)
    if at != end:
        raise PreprocessError(f"--input_txt {job.input_txt} changed while being read; run again")


def _write(fd: int, ids: np.ndarray, at: int, spans: tuple[Span, ...]) -> None:
    """Writes the indices of the units ``at``, ``at + 1``, ... into the datasets that hold them."""
    data, size = ids.data.cast("B"), ids.itemsize
    for span in spans:
        lo, hi = max(at, span.first), min(at + len(ids), span.first + span.size)
        if lo < hi:
            assert span.offset is not None
            view, offset = data[(lo - at) * size : (hi - at) * size], span.offset + (lo - span.first) * size
            while view:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done


def _indices(piece: Piece, table: np.ndarray, byte_map: bytes | None, unknown_bytes: bytes | None,
             dtype: np.dtype) -> np.ndarray:
    """1-based indices of a piece's units, without the unknown ones when ``unknown_bytes`` is given."""
    if isinstance(piece, bytes) and byte_map is not None:
        return np.frombuffer(piece.translate(byte_map, unknown_bytes or b""), np.uint8)
    ids = table[np.frombuffer(piece, np.uint8) if isinstance(piece, bytes) else piece]
    if unknown_bytes is not None:
        ids = ids[ids > 0]
    return ids.astype(dtype, copy=False)
