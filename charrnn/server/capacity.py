"""Admits generations up to a bound, refusing the rest at once, and spreads them over the workers.

The event loop only hands jobs over and waits for their answers, so it stays free to answer (and to
refuse) other requests meanwhile. Every wait is bounded: a worker that holds a request past its
deadline plus ``grace`` seconds has stopped answering (SIGSTOP, a hang) and is killed and replaced; a
worker that dies is replaced at once; one that cannot start fails the requests it holds and is tried
again at most every ``RETRY_START`` seconds, while ``status()`` says that nothing can serve.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from charrnn.server.loading import ServedModel
from charrnn.server.workers import Worker, WorkerError

log = logging.getLogger("charrnn.server")
RETRY_START = 10.0  # seconds between attempts to start a worker that could not start
START_WAIT = 60.0  # seconds a request waits for a starting worker, besides its deadline


class Busy(RuntimeError):
    """Every slot is taken; the request should be answered with 503 at once."""


class ClientGone(RuntimeError):
    """The client disconnected before its answer was ready; the job was dropped."""


@dataclass(frozen=True)
class PoolStatus:
    serving: int  # workers ready to generate
    starting: int
    problem: str | None  # why a worker is not serving, if one is not


def _deliver(done: Future, answer: asyncio.Future) -> None:
    if answer.done():  # the caller stopped waiting
        return
    if done.cancelled():
        answer.cancel()
    elif done.exception() is not None:
        answer.set_exception(done.exception())
    else:
        answer.set_result(done.result())


async def _disconnect(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Returns once the ASGI ``receive`` reports that the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Capacity:
    """At most ``max_pending`` generations admitted at once, batched by ``workers`` processes.

    Args:
        model: the model every worker serves (handed to them in memory, see :mod:`charrnn.server.workers`).
        workers: worker processes; each new job goes to the ready one with the fewest.
        max_pending: generations admitted at once; one more raises :class:`Busy`.
        int8: the workers multiply in 8-bit integers (see :mod:`charrnn.stepper`).
        threads: torch threads per worker.
        grace: seconds past a job's deadline after which its worker is taken for hung.
    """

    def __init__(self, model: ServedModel, workers: int, max_pending: int, int8: bool = False,
                 threads: int = 1, grace: float = 5.0) -> None:
        self.workers, self.max_pending, self.grace = workers, max_pending, grace
        self._model_bytes = pickle.dumps(model)
        self._options = (int8, threads)
        self._pending = 0
        self._lock = threading.Lock()
        self._closing = False
        self._failed: dict[int, tuple[float, str]] = {}  # slot -> when and why its worker could not start
        self._replacing: set[int] = set()  # slots whose new worker is being started (still the old one there)
        self._workers = [self._start(i) for i in range(workers)]

    def _start(self, index: int) -> Worker:
        return Worker(index, self._model_bytes, *self._options, on_exit=self._exited)

    def _exited(self, worker: Worker) -> None:
        """A worker has gone (from its reader thread): one that had served is replaced at once."""
        error = worker.ready.exception()
        with self._lock:
            if self._closing or self._workers[worker.index] is not worker:
                return
            if error is not None:
                self._failed[worker.index] = (time.monotonic(), str(error))
                log.error("%s; starting it again in %.0f s at the earliest", error, RETRY_START)
                return
            self._replacing.add(worker.index)
        log.warning("starting a new %s", worker.name)
        self._replace(worker.index)

    def _replace(self, index: int) -> None:
        """Starts a new worker in slot ``index``, which the caller has put in ``_replacing``: until it is
        there, the slot counts as starting."""
        try:
            worker = self._start(index)  # outside the lock: starting a process takes a moment
        except BaseException:
            with self._lock:
                self._replacing.discard(index)
            raise
        with self._lock:
            self._workers[index] = worker
            self._replacing.discard(index)
            closing = self._closing
        if closing:
            worker.stop()

    def _revive(self) -> None:
        """Starts again the workers that could not start, once ``RETRY_START`` has passed."""
        with self._lock:
            due = [i for i, (when, _) in self._failed.items()
                   if not self._closing and time.monotonic() - when >= RETRY_START]
            for index in due:
                del self._failed[index]
            self._replacing.update(due)
        for index in due:
            log.warning("starting %s again", self._workers[index].name)
            self._replace(index)

    def wait_ready(self, timeout: float) -> None:
        """Blocks until every worker has started; raises WorkerError if one could not."""
        for worker in self._workers:
            worker.ready.result(timeout)

    def _problems(self) -> list[str]:
        with self._lock:
            return [why for _, why in self._failed.values()]

    def status(self) -> PoolStatus:
        self._revive()
        with self._lock:
            workers, replacing = list(self._workers), len(self._replacing)
        problems = self._problems()
        if not problems and any(w.closed for w in workers):
            problems.append("a worker stopped; it is being replaced")
        return PoolStatus(sum(w.serving for w in workers), sum(w.starting for w in workers) + replacing,
                          "; ".join(problems) or None)

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _worker(self) -> Worker:
        self._revive()
        workers = list(self._workers)
        for candidates in ([w for w in workers if w.serving], [w for w in workers if w.starting]):
            if candidates:
                return min(candidates, key=lambda w: w.load)
        why = "; ".join(self._problems()) or "every worker has stopped"
        raise WorkerError(f"no worker can generate ({why}); the server tries to start them again every "
                          f"{RETRY_START:.0f} s")

    async def run(self, kind: str, deadline: float,
                  receive: Callable[[], Awaitable[dict[str, Any]]] | None = None, **job: Any) -> Any:
        """The answer of a job (see :mod:`charrnn.server.workers`) with ``deadline`` seconds of sampling.

        If the caller stops waiting, or the client disconnects (``receive``, the request's ASGI
        receive, reports it), the job is dropped at the worker's next step; its slot is given back
        when it has really ended. Raises WorkerError if the worker fails or does not answer within
        ``deadline + grace`` seconds (plus ``START_WAIT`` while it is starting).
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"all {self.max_pending} generation slots are in use (--max-pending); try again shortly")
            self._pending += 1
        try:
            worker = self._worker()
            job_id, future = worker.submit(kind, deadline=deadline, **job)
        except BaseException:
            self._release(Future())
            raise
        limit = deadline + self.grace + (0.0 if worker.serving else START_WAIT)
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        answer: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(self._release)
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(_deliver, done, answer))
        gone = asyncio.ensure_future(_disconnect(receive)) if receive is not None else None
        try:
            done, _ = await asyncio.wait([answer, gone] if gone else [answer], timeout=limit,
                                         return_when=asyncio.FIRST_COMPLETED)
            if answer in done:
                return answer.result()
            worker.cancel(job_id)
            answer.cancel()
            why = f"did not answer within {limit:.1f} s"
            if gone is not None and gone in done:
                # Nobody waits, but the job's slot comes back only once the worker answers: make sure it does.
                loop.call_at(end, self._expire, worker, future, why)
                raise ClientGone("the client disconnected")
            self._expire(worker, future, why)
            raise WorkerError(f"{worker.name} {why}")
        except asyncio.CancelledError:
            worker.cancel(job_id)
            raise
        finally:
            if gone is not None:
                gone.cancel()

    @staticmethod
    def _expire(worker: Worker, future: Future, why: str) -> None:
        """Kills ``worker`` if it still holds ``future``: it has stopped answering. Its other jobs fail
        too, and it is replaced."""
        if not future.done() and not worker.closed:
            worker.kill(why)

    def abort(self, why: str) -> None:
        """Answers every generation still running with WorkerError(``why``); starts no more workers."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            worker.fail_pending(why)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops every worker: asks them all, waits ``timeout`` seconds in all, then kills the rest."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            worker.stop()
        end = time.monotonic() + timeout
        for worker in workers:
            worker.join(end - time.monotonic())
