"""What the server's requests generate, as jobs for :class:`charrnn.server.batching.Batcher`: the
legacy completions under torch-rnn-server's rule, and the JSON API's continuations."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from charrnn.sampling import TokenText
from charrnn.server.batching import Job
from charrnn.server.options import CompletionRule
from charrnn.vocab import Vocab

_WHITESPACE = re.compile(r"\s+")
FinishReason = Literal["length", "stop", "deadline"]


def legacy_prime(vocab: Vocab, text: str, rule: CompletionRule, window: int) -> str:
    """The prime of ``GET /generate``: normalised by the rule, characters outside the vocabulary swapped to
    their other case or left out (:meth:`Vocab.swap_case_or_leave_out`), and cut to its last ``window``
    characters."""
    if rule.lowercase:
        text = text.lower()
    if rule.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    return vocab.swap_case_or_leave_out(text[-window:])[0]


class Draft:
    """One completion being sampled under the legacy rule; counts its words as characters arrive."""

    def __init__(self, rule: CompletionRule) -> None:
        self.rule = rule
        self.chars: list[str] = []
        self.words = 0
        self.in_word = False
        self.done = False

    def add(self, piece: str) -> None:
        rule = self.rule
        for ch in piece:
            if self.done:
                return
            self.chars.append(ch)
            if ch.isspace():
                self.in_word = False
            elif not self.in_word:
                self.in_word, self.words = True, self.words + 1
            self.done = (
                self.words > rule.max_words  # already too long: rejected, stop early
                or len(self.chars) >= rule.max_chars
                or (ch in rule.stop_chars and self.words > rule.stop_after_words)
            )

    @property
    def accepted(self) -> bool:
        return self.done and self.rule.min_words <= self.words <= self.rule.max_words

    @property
    def text(self) -> str:
        return "".join(self.chars)


class Completions(Job):
    """``n`` completions of the prime under ``rule`` (torch-rnn-server's by default): ``GET /generate``.

    ``ceil(missing * rule.oversample)`` rows run at any time, each at a temperature drawn from
    ``rule.temperatures``; a row that finishes is replaced while completions are missing, up to
    ``ceil(n * rule.oversample) * rule.max_attempts`` rows in all. The answer is the first ``n``
    completions to be accepted (rows finishing at the same step in the order they started).
    """

    def __init__(self, vocab: Vocab, prime: str, n: int, rule: CompletionRule, deadline: float, seed: int) -> None:
        super().__init__(vocab.encode(prime), deadline, seed)
        self.vocab, self.n, self.rule = vocab, n, rule
        self.rng = random.Random(seed)
        self.budget = math.ceil(n * rule.oversample) * rule.max_attempts
        self.drafts: list[Draft] = []
        self.decoders: list[TokenText] = []
        self.accepted: list[str] = []
        self.running = 0

    def start_rows(self) -> list[tuple[int, float]]:
        missing = self.n - len(self.accepted)
        wanted = min(math.ceil(missing * self.rule.oversample) - self.running, self.budget - len(self.drafts))
        rows = []
        for _ in range(max(0, wanted)):
            rows.append((len(self.drafts), self.rng.choice(self.rule.temperatures)))
            self.drafts.append(Draft(self.rule))
            self.decoders.append(TokenText(self.vocab))
        self.running += len(rows)
        return rows

    def feed(self, row: int, token: int) -> bool:
        draft = self.drafts[row]
        if not draft.done:
            draft.add(self.decoders[row](token))
            if draft.done:
                self.running -= 1
                if draft.accepted and len(self.accepted) < self.n:
                    self.accepted.append(draft.text)
        return draft.done

    def finished(self) -> bool:
        return len(self.accepted) == self.n or (self.running == 0 and len(self.drafts) >= self.budget)

    def result(self) -> list[str]:
        return self.accepted


@dataclass(frozen=True)
class Continuation:
    """One continuation of ``POST /v1/generate``, as the worker makes it and the API returns it."""

    text: str
    finish_reason: FinishReason


def _first_stop(text: str, new: int, stop: tuple[str, ...]) -> int | None:
    """Where the earliest stop sequence ending in the last ``new`` characters of ``text`` starts."""
    hits = [i for s in stop if (i := text.find(s, max(0, len(text) - new - len(s) + 1))) >= 0]
    return min(hits) if hits else None


class Continuations(Job):
    """``n`` continuations of ``prime`` (already through :meth:`Vocab.swap_case_or_leave_out`): ``POST /v1/generate``.

    Each ends after ``length`` steps, before its first ``stop`` sequence, or at the deadline.
    """

    def __init__(self, vocab: Vocab, prime: str, n: int, length: int, temperature: float, top_k: int | None,
                 top_p: float | None, seed: int, stop: tuple[str, ...], deadline: float) -> None:
        super().__init__(vocab.encode(prime), deadline, seed, top_k, top_p)
        self.n, self.length, self.temperature, self.stop = n, length, temperature, stop
        self.texts = [""] * n
        self.steps = [0] * n
        self.reasons: list[FinishReason | None] = [None] * n
        self.decoders = [TokenText(vocab) for _ in range(n)]
        self.started = False

    def start_rows(self) -> list[tuple[int, float]]:
        if self.started:
            return []
        self.started = True
        return [(i, self.temperature) for i in range(self.n)]

    def uniforms(self, rows: list[int]) -> Tensor:
        # Draws for all n rows at every step: a row's text does not depend on when the others stopped.
        return torch.rand(self.n, generator=self.generator)[rows]

    def feed(self, row: int, token: int) -> bool:
        piece = self.decoders[row](token)
        self.steps[row] += 1
        if piece:
            self.texts[row] += piece
            cut = _first_stop(self.texts[row], len(piece), self.stop) if self.stop else None
            if cut is not None:
                self.texts[row], self.reasons[row] = self.texts[row][:cut], "stop"
        if self.reasons[row] is None and self.steps[row] >= self.length:
            self.reasons[row] = "length"
        return self.reasons[row] is not None

    def finished(self) -> bool:
        return all(r is not None for r in self.reasons)

    def result(self) -> list[Continuation]:
        return [Continuation(t, r or "deadline") for t, r in zip(self.texts, self.reasons, strict=True)]
