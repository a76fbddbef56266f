"""Generation in worker processes, each running one :class:`~charrnn.server.batching.Batcher`.

Every step of a batch has a Python part (picking, the completion rule) besides its torch kernels, and
batcher threads of one process take turns at it under the GIL: two threads got no more done than one.
Processes don't share a GIL, so one per core uses every core. The web server sends each worker small
job descriptions over a pipe and gets the answers back the same way.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import torch

from charrnn.server.batching import Batcher, Job
from charrnn.server.generation import Completions, Continuations
from charrnn.server.loading import load_served_model

log = logging.getLogger("charrnn.server")
KINDS: dict[str, type[Completions] | type[Continuations]] = {"completions": Completions,
                                                             "continuations": Continuations}


class WorkerError(RuntimeError):
    """A worker could not start, or failed while running a job."""


def _serve(conn: Connection, ckpt: str, device: str, int8: bool, threads: int) -> None:
    """The worker process: loads the model, then runs the jobs it is sent until its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the web server stops us
    torch.set_num_threads(threads)
    try:
        model = load_served_model(ckpt, device)
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
    """One worker process and the futures of the jobs it runs."""

    def __init__(self, index: int, ckpt: str, device: str, int8: bool, threads: int) -> None:
        self.name = f"charrnn-worker-{index}"
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, ckpt, device, int8, threads), name=self.name,
                                       daemon=True)
        self.process.start()
        child.close()
        self.pending: dict[int, Future] = {}
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.ready: Future[None] = Future()
        self.reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self.reader.start()

    @property
    def load(self) -> int:
        return len(self.pending)

    def _read(self) -> None:
        try:
            while True:
                kind, *rest = self.conn.recv()
                if kind == "ready":
                    self.ready.set_result(None)
                elif kind == "failed":
                    self.ready.set_exception(WorkerError(rest[0]))
                    return
                else:
                    future = self.pending.pop(rest[0])
                    if kind == "done":
                        future.set_result(rest[1])
                    else:
                        future.set_exception(WorkerError(rest[1]))
        except (EOFError, OSError):
            pass
        with self.lock:
            self.conn.close()
            failed, self.pending = self.pending, {}
        if not self.ready.done():
            self.ready.set_exception(WorkerError(f"{self.name} exited with {self.process.exitcode} while starting"))
        for future in failed.values():
            future.set_exception(WorkerError(f"{self.name} stopped while generating"))
        if failed:
            log.error("%s stopped; %d requests failed", self.name, len(failed))

    def submit(self, kind: str, **kwargs: Any) -> tuple[int, Future]:
        future: Future = Future()
        with self.lock:
            if self.conn.closed:
                raise WorkerError(f"{self.name} has stopped")
            job_id = next(self.ids)
            self.pending[job_id] = future
            self.conn.send(("job", job_id, kind, kwargs))
        return job_id, future

    def cancel(self, job_id: int) -> None:
        with self.lock:
            if job_id in self.pending and not self.conn.closed:
                self.conn.send(("cancel", job_id))

    def stop(self) -> None:
        """Asks the process to end (its reader then sees the pipe close) and waits a little for it."""
        with self.lock:
            if not self.conn.closed:
                try:
                    self.conn.send(("stop",))
                except OSError:
                    pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
