"""Runs generations on a fixed pool of threads and refuses work beyond a bound instead of queueing it.

Sampling is CPU-bound torch code, which releases the GIL inside its kernels, so threads overlap; the
event loop stays free to answer (and to refuse) other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(RuntimeError):
    """Every slot is taken; the request should be answered with 503 at once."""


class Capacity:
    """At most ``max_pending`` generations running or waiting, ``workers`` of them running.

    Args:
        workers: threads that run generations.
        max_pending: generations admitted at once; one more raises :class:`Busy`.
    """

    def __init__(self, workers: int, max_pending: int) -> None:
        self.workers, self.max_pending = workers, max_pending
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="charrnn-generate")

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1
        self._slots.release()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a worker thread. The slot is given back when the work has really ended
        (or was cancelled before it started), not when the caller stops waiting."""
        if not self._slots.acquire(blocking=False):
            raise Busy(f"all {self.max_pending} generation slots are in use (--max-pending); try again shortly")
        with self._lock:
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release(Future())
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
