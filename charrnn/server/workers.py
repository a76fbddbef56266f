"""Generation in worker processes, each running one :class:`~charrnn.server.batching.Batcher`.

Every step of a batch has a Python part (picking, the completion rule) besides its torch kernels, and
batcher threads of one process take turns at it under the GIL: two threads got no more done than one.
Processes don't share a GIL, so one per core uses every core. The web server sends each worker small
job descriptions over a pipe and gets the answers back the same way.

A worker gets the model from the web server (the network pickled once, in memory), never from the
checkpoint file: a replacement serves the model the server started with even after the file was
deleted by top-k rotation or overwritten by another run.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import torch

from charrnn.server.batching import Batcher, Job
from charrnn.server.generation import Completions, Continuations
from charrnn.server.loading import ServedModel

log = logging.getLogger("charrnn.server")
KINDS: dict[str, type[Completions] | type[Continuations]] = {"completions": Completions,
                                                             "continuations": Continuations}


class WorkerError(RuntimeError):
    """A worker could not start, or failed while running a job."""


def _serve(conn: Connection, int8: bool, threads: int) -> None:
    """The worker process: receives the model, then runs the jobs it is sent until its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the web server stops us
    torch.set_num_threads(threads)
    try:
        # Bytes pickled by the web server (our parent), not read from a file: nothing untrusted is unpickled.
        model: ServedModel = pickle.loads(conn.recv_bytes())
        batcher = Batcher(model, int8).start()
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    jobs: dict[int, Job] = {}
    send = threading.Lock()

    def answer(job_id: int, future: Future) -> None:
        jobs.pop(job_id, None)
        if future.cancelled():
            return
        error = future.exception()
        message = ("done", job_id, future.result()) if error is None else \
            ("error", job_id, f"{type(error).__name__}: {error}")
        with send:
            conn.send(message)

    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "job":
            _, job_id, kind, kwargs = message
            try:
                job = KINDS[kind](model.vocab, **kwargs)
            except Exception as e:
                with send:
                    conn.send(("error", job_id, f"{type(e).__name__}: {e}"))
                continue
            jobs[job_id] = job
            job.future.add_done_callback(lambda f, i=job_id: answer(i, f))
            batcher.submit(job)
        elif message[0] == "cancel" and (job := jobs.get(message[1])) is not None:
            job.cancelled = True
        elif message[0] == "stop":
            break
    batcher.stop()
    batcher.thread.join(5)


class Worker:
    """One worker process and the futures of the jobs it runs.

    Messages to the process go through a queue and a sender thread, so the web server never blocks on
    a full pipe (a stopped worker reads nothing). ``on_exit(worker)`` is called once the process has
    gone (or failed to start), after every job it held has failed.
    """

    def __init__(self, index: int, model_bytes: bytes, int8: bool, threads: int,
                 on_exit: Callable[[Worker], None] | None = None) -> None:
        self.index = index
        self.name = f"charrnn-worker-{index}"
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, int8, threads), name=self.name, daemon=True)
        self.process.start()
        child.close()
        self.pending: dict[int, Future] = {}
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.closed = False  # no more jobs are taken
        self.ready: Future[None] = Future()
        self.on_exit = on_exit
        self.outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.model_bytes = model_bytes  # sent first, by the sender thread: the pipe takes it as fast as the child reads
        self.sender = threading.Thread(target=self._send, name=f"{self.name}-sender", daemon=True)
        self.sender.start()
        self.reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self.reader.start()

    @property
    def load(self) -> int:
        return len(self.pending)

    @property
    def serving(self) -> bool:
        """Started, and not stopped since."""
        return not self.closed and self.ready.done() and self.ready.exception() is None

    @property
    def starting(self) -> bool:
        return not self.closed and not self.ready.done()

    def _send(self) -> None:
        try:
            self.conn.send_bytes(self.model_bytes)
            while (message := self.outbox.get()) is not None:
                self.conn.send(message)
        except (OSError, ValueError):  # the process has gone; the reader fails its jobs
            pass

    def _read(self) -> None:
        why = "stopped"
        try:
            while True:
                kind, *rest = self.conn.recv()
                if kind == "ready":
                    self.ready.set_result(None)
                elif kind == "failed":
                    why = f"could not start: {rest[0]}"
                    self.ready.set_exception(WorkerError(f"{self.name} {why}"))
                    break
                else:
                    future = self.pending.pop(rest[0], None)
                    if future is None:
                        continue
                    if kind == "done":
                        future.set_result(rest[1])
                    else:
                        future.set_exception(WorkerError(rest[1]))
        except (EOFError, OSError):
            pass
        self._close(why)

    def _close(self, why: str) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            failed, self.pending = self.pending, {}
        self.outbox.put(None)
        if not self.ready.done():
            self.ready.set_exception(WorkerError(f"{self.name} exited while starting"))
        for future in failed.values():
            if not future.done():
                future.set_exception(WorkerError(f"{self.name} {why} while generating"))
        if failed:
            log.error("%s %s; %d requests failed", self.name, why, len(failed))
        if self.on_exit is not None:
            self.on_exit(self)

    def submit(self, kind: str, **kwargs: Any) -> tuple[int, Future]:
        future: Future = Future()
        with self.lock:
            if self.closed:
                raise WorkerError(f"{self.name} has stopped")
            job_id = next(self.ids)
            self.pending[job_id] = future
        self.outbox.put(("job", job_id, kind, kwargs))
        return job_id, future

    def cancel(self, job_id: int) -> None:
        if job_id in self.pending and not self.closed:
            self.outbox.put(("cancel", job_id))

    def fail_pending(self, why: str) -> None:
        """Answers every job this worker holds with WorkerError(``why``) now."""
        with self.lock:
            failed, self.pending = self.pending, {}
        for future in failed.values():
            if not future.done():
                future.set_exception(WorkerError(why))

    def kill(self, why: str) -> None:
        """Ends a worker that stopped answering: its jobs fail at once and ``on_exit`` replaces it."""
        log.error("%s %s; killing it", self.name, why)
        self.process.kill()
        self._close(why)
        self.process.join(5)

    def stop(self) -> None:
        """Asks the process to end; :meth:`join` then waits for it."""
        self.on_exit = None
        self.outbox.put(("stop",))
        self.outbox.put(None)

    def join(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for the process to end, then kills it."""
        self.process.join(max(timeout, 0.0))
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
