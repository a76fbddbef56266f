"""A large file cut into parts that worker processes read side by side.

A file in UTF-8 (or ``--encoding bytes``) is cut into parts of at least ``MIN_PART_BYTES``, one per core
(``--workers``), each starting on a character boundary. The output does not depend on the number of parts.
"""

from __future__ import annotations

import codecs
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.pool import Pool, ThreadPool
from pathlib import Path
from typing import BinaryIO, TypeVar

MIN_PART_BYTES = 8 << 20  # a file is cut into parts of at least this size, one per worker
MAX_PARTS = 8
T = TypeVar("T")


def _splittable(encoding: str) -> bool:
    """Whether a file in ``encoding`` can be cut into parts read on their own (bytes and UTF-8)."""
    return encoding == "bytes" or codecs.lookup(encoding).name == "utf-8"


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def may_fork() -> bool:
    """Whether worker processes can be forked safely: the system forks, and this process runs no other
    thread (a child gets only the calling thread, so a lock another one held would stay held)."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def part_count(size: int, encoding: str, workers: int | None) -> int:
    """How many parts to cut a file of ``size`` bytes into: one per worker, each of at least
    ``MIN_PART_BYTES``; a single part for codecs other than UTF-8 or where forking is not safe."""
    if not _splittable(encoding) or not may_fork():
        return 1
    return max(1, min(workers or available_cores(), size // MIN_PART_BYTES, MAX_PARTS))


def split_file(path: Path, encoding: str, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges (start, stop) of nearly equal size covering the file, each starting on a
    character boundary: in UTF-8 a cut moves forward past continuation bytes (at most 3)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            cut = i * size // parts
            cuts.append(max(cuts[-1], cut if encoding == "bytes" else _character_start(f, cut)))
    return list(zip(cuts, cuts[1:] + [size], strict=True))


def _character_start(f: BinaryIO, at: int) -> int:
    """The first UTF-8 character boundary at or after ``at``: past at most 3 continuation bytes."""
    f.seek(at)
    head = f.read(3)
    return at + next((k for k, b in enumerate(head) if b & 0xC0 != 0x80), len(head))


def worker_pool(parts: int) -> Pool:
    """Processes for several parts (each reads and encodes at its own core); for one part, threads:
    the part and the SHA-256 side by side, without paying for starting processes."""
    return multiprocessing.get_context("fork").Pool(parts) if parts > 1 else ThreadPool(2)


def in_order(pool: Pool, task: Callable[..., T], jobs: list[tuple]) -> list[T]:
    """``task(*job)`` for each job, run in ``pool``; the results (or the first job's error) in job order."""
    pending = [pool.apply_async(task, job) for job in jobs]
    return [p.get() for p in pending]
