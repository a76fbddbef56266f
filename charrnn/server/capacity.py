"""Admits generations up to a bound, refusing the rest at once, and spreads them over the workers.

The event loop only hands jobs over and waits for their answers, so it stays free to answer (and to
refuse) other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from charrnn.server.workers import Worker

log = logging.getLogger("charrnn.server")


class Busy(RuntimeError):
    """Every slot is taken; the request should be answered with 503 at once."""


def _deliver(done: Future, answer: asyncio.Future) -> None:
    if answer.done():  # the caller stopped waiting
        return
    if done.cancelled():
        answer.cancel()
    elif done.exception() is not None:
        answer.set_exception(done.exception())
    else:
        answer.set_result(done.result())


class Capacity:
    """At most ``max_pending`` generations admitted at once, batched by ``workers`` processes.

    Args:
        ckpt: the model every worker loads.
        device: where the workers run it.
        workers: worker processes; each new job goes to the one with the fewest.
        max_pending: generations admitted at once; one more raises :class:`Busy`.
        int8: the workers multiply in 8-bit integers (see :mod:`charrnn.stepper`).
        threads: torch threads per worker.
    """

    def __init__(self, ckpt: str, device: str, workers: int, max_pending: int, int8: bool = False,
                 threads: int = 1) -> None:
        self.workers, self.max_pending = workers, max_pending
        self._spawn = (ckpt, device, int8, threads)
        self._pending = 0
        self._lock = threading.Lock()
        self._workers = [Worker(i, *self._spawn) for i in range(workers)]

    def wait_ready(self, timeout: float) -> None:
        """Blocks until every worker has loaded the model; raises WorkerError if one could not."""
        for worker in self._workers:
            worker.ready.result(timeout)

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _worker(self) -> Worker:
        for i, worker in enumerate(self._workers):
            if worker.conn.closed:  # it died: start another in its place
                log.warning("starting a new %s", worker.name)
                self._workers[i] = Worker(i, *self._spawn)
        return min(self._workers, key=lambda w: w.load)

    async def run(self, kind: str, **job: Any) -> Any:
        """The answer of a job (see :mod:`charrnn.server.workers`). If the caller stops waiting, the
        job is dropped at the worker's next step; its slot is given back when it has really ended."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"all {self.max_pending} generation slots are in use (--max-pending); try again shortly")
            self._pending += 1
        worker = self._worker()
        try:
            job_id, future = worker.submit(kind, **job)
        except BaseException:
            self._release(Future())
            raise
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(self._release)
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(_deliver, done, answer))
        try:
            return await answer
        except asyncio.CancelledError:
            worker.cancel(job_id)
            raise

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.stop()
