"""Continuous batching: the rows of every running request advance together, one token per step.

A step of 40 rows costs little more than a step of 5 (the weights are read once either way), so each
worker thread steps all rows of all its requests at once. A request joins between two steps, once its
prime has been read, and each row leaves the batch as soon as it has finished. Every request draws its
random numbers from its own generator, and each row's arithmetic depends on that row alone, so what a
request gets does not depend on what runs beside it (bit for bit with int8 products, see
:mod:`charrnn.stepper`).
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any

import torch
from torch import Tensor

from charrnn.net import State, map_state
from charrnn.sampling import pick, prime_state
from charrnn.server.loading import ServedModel
from charrnn.stepper import Stepper


class Job(ABC):
    """One request's generation: which rows to sample and what their tokens mean.

    Args:
        prime: the prime as token indices.
        deadline: seconds from now after which the job is answered with what it has.
        seed: seeds the job's own random generator.
        top_k, top_p: as in :func:`charrnn.sampling.pick`, for all of the job's rows.
    """

    def __init__(self, prime: list[int], deadline: float, seed: int, top_k: int | None = None,
                 top_p: float | None = None) -> None:
        self.prime = prime
        self.end = time.monotonic() + deadline
        self.generator = torch.Generator().manual_seed(seed)
        self.top_k, self.top_p = top_k, top_p
        self.future: Future[Any] = Future()
        self.cancelled = False  # nobody waits for the answer any more

    @abstractmethod
    def start_rows(self) -> list[tuple[Hashable, float]]:
        """Rows to start now, from the prime: a handle and a temperature for each."""

    @abstractmethod
    def feed(self, row: Hashable, token: int) -> bool:
        """The next token of ``row``; whether that row has finished."""

    def uniforms(self, rows: list[Hashable]) -> Tensor:
        """The uniform draws that pick the next tokens of ``rows`` (see :func:`charrnn.sampling.pick`)."""
        return torch.rand(len(rows), generator=self.generator)

    @abstractmethod
    def finished(self) -> bool:
        """Whether the answer is complete."""

    @abstractmethod
    def result(self) -> Any:
        """The answer: complete when :meth:`finished`, what there is otherwise (at the deadline)."""


def _cat(a: State, b: State) -> State:
    return map_state(lambda x, y: torch.cat([x, y], 1), a, b)


def _take(state: State, rows: Tensor) -> State:
    return map_state(lambda s: s.index_select(1, rows), state)


def _expand(state: State, k: int) -> State:
    return map_state(lambda s: s.expand(-1, k, -1), state)


class Batcher:
    """A worker thread that runs many jobs as one batch. :meth:`submit` hands it a job; the job's
    ``future`` gets the answer."""

    def __init__(self, model: ServedModel, int8: bool = False, name: str = "charrnn-batcher") -> None:
        self.model = model
        self.step_net = Stepper(model.net, int8)
        self.device = next(model.net.parameters()).device
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.rows: list[tuple[Job, Hashable]] = []
        self.logits: Tensor | None = None  # (R, V): what each row samples its next token from
        self.state: State | None = None  # (layers, R, H)
        self.temperatures = torch.zeros(0, device=self.device)
        self.primes: dict[Job, tuple[Tensor, State]] = {}
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Batcher:
        self.thread.start()
        return self

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def stop(self) -> None:
        self.inbox.put(None)

    def _loop(self) -> None:
        while True:
            jobs: list[Job | None] = []
            try:
                jobs.append(self.inbox.get(block=not self.primes))
                while True:
                    jobs.append(self.inbox.get_nowait())
            except queue.Empty:
                pass
            for job in jobs:
                if job is None:
                    self._abandon()
                    return
                self._admit(job)
            if self.primes:
                try:
                    self.advance()
                except Exception as e:  # every running job gets the error, never a wait without end
                    self._fail(e)

    def _fail(self, error: Exception) -> None:
        for job in self.primes:
            if not job.future.done():
                job.future.set_exception(error)
        self.primes.clear()
        self.rows, self.logits, self.state = [], None, None
        self.temperatures = torch.zeros(0, device=self.device)

    def run(self, job: Job) -> Any:
        """Runs ``job`` (and whatever else was submitted) on the calling thread until it is answered."""
        self._admit(job)
        while not job.future.done():
            self.advance()
        return job.future.result()

    @torch.no_grad()
    def _admit(self, job: Job) -> None:
        try:
            prime = torch.tensor([job.prime], dtype=torch.long, device=self.device).reshape(1, -1)
            logits, state = prime_state(self.model.net, prime)
            self.primes[job] = (logits, state if state is not None else self.model.net.zero_state(1))
            self._open_rows([job])
            self._settle([job])
        except Exception as e:  # answered with an error, never left waiting
            self.primes.pop(job, None)
            job.future.set_exception(e)

    def _open_rows(self, jobs: list[Job]) -> None:
        for job in jobs:
            starts = job.start_rows()
            if not starts:
                continue
            logits, state = self.primes[job]
            k = len(starts)
            self.rows += [(job, row) for row, _ in starts]
            temps = torch.tensor([t for _, t in starts], device=self.device)
            self.temperatures = torch.cat([self.temperatures, temps])
            if self.state is None or self.logits is None:
                self.logits, self.state = logits.expand(k, -1), _expand(state, k)
            else:
                self.logits = torch.cat([self.logits, logits.expand(k, -1)])
                self.state = _cat(self.state, _expand(state, k))

    def _settle(self, jobs: list[Job]) -> None:
        """Answers the jobs that are finished, past their deadline or abandoned."""
        now = time.monotonic()
        for job in jobs:
            if job not in self.primes:
                continue
            if job.finished() or now >= job.end or job.cancelled:
                del self.primes[job]
                try:
                    job.future.set_result(job.result())
                except Exception as e:
                    job.future.set_exception(e)

    def _draw(self) -> Tensor:
        """The next token of every row, each job's rows with its own generator and settings."""
        assert self.logits is not None
        groups: dict[Job, list[int]] = {}
        for r, (job, _) in enumerate(self.rows):
            groups.setdefault(job, []).append(r)
        order = [r for rows in groups.values() for r in rows]
        uniform = torch.cat([job.uniforms([self.rows[r][1] for r in rows]) for job, rows in groups.items()])
        if order != list(range(len(order))):
            uniform = torch.empty_like(uniform).index_copy_(0, torch.tensor(order), uniform)
        uniform = uniform.to(self.device)
        settings = {(job.top_k, job.top_p) for job in groups}
        if len(settings) == 1:
            top_k, top_p = settings.pop()
            return pick(self.logits, self.temperatures, top_k, top_p, uniform=uniform)
        tokens = torch.empty(len(self.rows), dtype=torch.long, device=self.device)
        for top_k, top_p in settings:
            idx = torch.tensor([r for job, rows in groups.items() if (job.top_k, job.top_p) == (top_k, top_p)
                                for r in rows], device=self.device)
            tokens[idx] = pick(self.logits[idx], self.temperatures[idx], top_k, top_p, uniform=uniform[idx])
        return tokens

    @torch.no_grad()
    def advance(self) -> None:
        """One step: every row gets a token; finished rows and answered jobs leave; the rest step on."""
        jobs = list(self.primes)
        if self.rows:
            tokens = self._draw()
            keep = [r for r, ((job, row), token) in enumerate(zip(self.rows, tokens.tolist(), strict=True))
                    if job in self.primes and not job.feed(row, token)]
            self._settle(jobs)
            keep = [r for r in keep if self.rows[r][0] in self.primes]
            if len(keep) < len(self.rows):
                idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                tokens, self.temperatures = tokens[idx], self.temperatures[idx]
                self.rows = [self.rows[r] for r in keep]
                assert self.state is not None
                self.state = _take(self.state, idx)
            if self.rows:
                self.logits, self.state = self.step_net(tokens, self.state)
            else:
                self.logits = self.state = None
        else:
            self._settle(jobs)
        self._open_rows([job for job in jobs if job in self.primes])
        self._settle([job for job in jobs if job in self.primes])

    def _abandon(self) -> None:
        for job in list(self.primes):
            job.future.cancel()
        self.primes.clear()
