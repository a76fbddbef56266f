"""Completions for the server, built on :func:`charrnn.sampling.sample`: every request samples its n
rows as one batch with its own generator and hidden state, and stops at a deadline."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Literal

from charrnn.sampling import sample
from charrnn.server.loading import ServedModel
from charrnn.server.options import CompletionRule
from charrnn.vocab import Vocab

_WHITESPACE = re.compile(r"\s+")
FinishReason = Literal["length", "stop", "deadline"]


def legacy_prime(vocab: Vocab, text: str, rule: CompletionRule, window: int) -> str:
    """The prime of ``GET /generate``: normalised by the rule, fitted to the vocabulary, and cut to
    its last ``window`` characters."""
    if rule.lowercase:
        text = text.lower()
    if rule.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    return vocab.fit(text[-window:])[0]


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


def _settled(drafts: list[Draft], wanted: int) -> bool:
    """Whether the first ``wanted`` accepted drafts in row order are known. Taking completions in row
    order (not in order of finishing) keeps short completions from being favoured."""
    found = 0
    for d in drafts:
        if not d.done:
            return False
        found += d.accepted
        if found >= wanted:
            return True
    return True


def complete(model: ServedModel, prime: str, n: int, rule: CompletionRule, deadline: float, seed: int) -> list[str]:
    """Up to ``n`` completions of ``prime`` under ``rule`` (torch-rnn-server's by default).

    Each attempt samples the missing completions (times ``rule.oversample``) as one batch, each row
    at a temperature drawn from ``rule.temperatures``, and ends as soon as the result is settled. It
    answers with what it has after ``rule.max_attempts`` batches or ``deadline`` seconds.
    """
    rng = random.Random(seed)
    end = time.monotonic() + deadline
    accepted: list[str] = []
    for _ in range(rule.max_attempts):
        missing = n - len(accepted)
        if missing <= 0 or time.monotonic() >= end:
            break
        rows = math.ceil(missing * rule.oversample)
        drafts = [Draft(rule) for _ in range(rows)]
        temperatures = [rng.choice(rule.temperatures) for _ in range(rows)]
        stream = sample(model.net, model.vocab, prime, rule.max_chars, temperatures,
                        num_samples=rows, seed=rng.getrandbits(63))
        with closing(stream):
            for pieces in stream:
                for draft, piece in zip(drafts, pieces, strict=True):
                    draft.add(piece)
                if _settled(drafts, missing) or time.monotonic() >= end:
                    break
            else:  # the stream ran out (a byte model spends several steps on one character)
                for draft in drafts:
                    draft.done = True
        accepted += [d.text for d in drafts if d.accepted][:missing]
    return accepted


@dataclass(frozen=True)
class Continuation:
    text: str
    finish_reason: FinishReason


def _first_stop(text: str, new: int, stop: tuple[str, ...]) -> int | None:
    """Where the earliest stop sequence ending in the last ``new`` characters of ``text`` starts."""
    hits = [i for s in stop if (i := text.find(s, max(0, len(text) - new - len(s) + 1))) >= 0]
    return min(hits) if hits else None


def continue_text(
    model: ServedModel,
    prime: str,
    n: int,
    length: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    stop: tuple[str, ...],
    deadline: float,
) -> list[Continuation]:
    """``n`` continuations of ``prime`` (already fitted to the vocabulary), sampled as one batch.

    Each ends after ``length`` steps, before its first ``stop`` sequence, or at the ``deadline``.
    """
    end = time.monotonic() + deadline
    texts = [""] * n
    reasons: list[FinishReason | None] = [None] * n
    stream: Iterator[list[str]] = sample(model.net, model.vocab, prime, length, float(temperature), top_k, top_p,
                                         num_samples=n, seed=seed)
    with closing(stream):
        for pieces in stream:
            for i, piece in enumerate(pieces):
                if reasons[i] is None and piece:
                    texts[i] += piece
                    cut = _first_stop(texts[i], len(piece), stop) if stop else None
                    if cut is not None:
                        texts[i], reasons[i] = texts[i][:cut], "stop"
            if all(r is not None for r in reasons):
                break
            if time.monotonic() >= end:
                reasons = [r or "deadline" for r in reasons]
                break
    return [Continuation(t, r or "length") for t, r in zip(texts, reasons, strict=True)]
