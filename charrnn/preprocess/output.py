"""The .h5/.json pair written through :func:`~charrnn.atomic.atomic_write_all`: both are complete and
on disk before either replaces a file already there, so a crash or a bad input never destroys an existing pair.

The .h5 is torch-rnn's: datasets ``train``, ``val``, ``test`` of 1-based indices, allocated in place
(contiguous, not filled) for pass 2 to write into; the .json is the vocabulary and what it was made from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np

from charrnn.atomic import NoSpaceError, atomic_write_all
from charrnn.preprocess.encode import EncodeJob, Span, write_parts
from charrnn.preprocess.record import SPLITS, made_with, record
from charrnn.preprocess.scan import Scan
from charrnn.preprocess.settings import PreprocessError, PreprocessSettings
from charrnn.vocab import Vocab


def split_sizes(total: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """torch-rnn's split: val and test are truncated fractions, train is the rest."""
    val, test = int(val_frac * total), int(test_frac * total)
    return total - val - test, val, test


@dataclass(frozen=True)
class Layout:
    """What pass 1 decided for pass 2: the vocabulary, each part's byte range and scan, the splits' sizes."""

    vocab: Vocab
    parts: list[tuple[int, int]]
    scans: list[Scan]
    sizes: tuple[int, int, int]
    unknown: Counter[int]  # the text's characters outside a given vocabulary, left out

    @property
    def dtype(self) -> np.dtype:
        """torch-rnn's: one byte per index when every index fits."""
        return np.dtype(np.uint8 if len(self.vocab) <= 255 else "<u4")


def allocate_h5(path: Path, sizes: tuple[int, ...], dtype: np.dtype) -> tuple[Span, ...]:
    """Creates the .h5 with its datasets allocated in place (contiguous, not filled), to be written
    by :func:`~charrnn.preprocess.encode.encode_part`, and says where each lies."""
    spans: list[Span] = []
    with h5py.File(path, "w", track_order=False) as f:
        for name, size, first in zip(SPLITS, sizes, accumulate(sizes, initial=0)):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            ds = f.create_dataset(name, shape=(size,), dtype=dtype, dcpl=dcpl)
            spans.append(Span(first, size, ds.id.get_offset()))
    return tuple(spans)


def write_pair(settings: PreprocessSettings, layout: Layout, pool: Pool, sha256: AsyncResult[str]) -> None:
    """Pass 2 into the .h5, then the .json, both staged beside their targets and moved into place together."""

    def write_h5(file: BinaryIO) -> None:
        staged = Path(file.name)  # h5py and the parts write it by name
        spans = allocate_h5(staged, layout.sizes, layout.dtype)
        firsts = accumulate((part.total for part in layout.scans), initial=0)  # index of each part's first unit
        jobs = [EncodeJob(settings.input_txt, settings.encoding, start, stop, first, part.total, layout.vocab,
                          bool(layout.unknown), staged, spans, layout.dtype.str)
                for (start, stop), first, part in zip(layout.parts, firsts, layout.scans)]
        write_parts(pool, jobs, file.fileno())

    def write_json(file: BinaryIO) -> None:
        meta = layout.vocab.to_json_dict()
        made = made_with(settings.encoding, settings.val_frac, settings.test_frac, settings.vocab)
        meta["charrnn"] = record(sha256.get(), made, layout.unknown, layout.sizes)
        file.write(json.dumps(meta).encode("ascii"))

    try:
        atomic_write_all({settings.output_h5: write_h5, settings.output_json: write_json})
    except OSError as e:  # a full disk, a directory that refuses files: nothing is replaced
        cause = e.__cause__ if isinstance(e, NoSpaceError) else e  # the system's words
        first = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise PreprocessError(f"--output_h5 {settings.output_h5} / --output_json {settings.output_json} could not "
                              f"be written ({first}); files already there are left as they were") from None
