"""The server's knobs: the legacy completion rule and the limits that keep every request bounded."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from charrnn.errors import MAX_PROCESSES
from charrnn.sampling import check_settings

DEFAULT_TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class CompletionRule:
    """How ``GET /generate`` turns a prime into completions; the defaults are torch-rnn-server's rule.

    Args:
        lowercase: lowercase the prime (torch-rnn-server's model was trained on lowercase text).
        collapse_whitespace: turn every run of whitespace in the prime into one space.
        temperatures: each completion samples at one of these, drawn at random.
        stop_chars: a completion ends at one of these characters ...
        stop_after_words: ... once it holds more than this many words.
        max_chars: a completion ends at this many characters in any case.
        min_words: completions with fewer words are thrown away (and replaced by another attempt).
        max_words: completions with more words are thrown away.
        max_attempts: a request samples at most ``ceil(n * oversample) * max_attempts`` rows, then
            answers with what there is.
        oversample: rows sampled at once for each completion still missing; a finished row is
            replaced while completions are missing. The first n accepted are the answer.
    """

    lowercase: bool = True
    collapse_whitespace: bool = True
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    stop_chars: str = "!?."
    stop_after_words: int = 3
    max_chars: int = 140
    min_words: int = 3
    max_words: int = 20
    max_attempts: int = 4
    oversample: float = 3.0

    def __post_init__(self) -> None:
        if not self.temperatures:
            raise ValueError("--temperatures needs at least one value")
        try:
            check_settings(self.temperatures)
        except ValueError as e:
            raise ValueError(f"--temperatures: {e}") from None
        if self.max_chars < 1:
            raise ValueError(f"--max-chars {self.max_chars} must be ≥1")
        if not 0 <= self.min_words <= self.max_words:
            raise ValueError(f"--min-words {self.min_words} and --max-words {self.max_words} need 0 ≤ min ≤ max")
        if self.max_attempts < 1:
            raise ValueError(f"--max-attempts {self.max_attempts} must be ≥1")
        if not 1 <= self.oversample <= 4:
            raise ValueError(f"--oversample {self.oversample} must be between 1 and 4")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for and on how many run at once.

    Args:
        max_n: completions per request; ``n`` above it is capped (legacy) or refused (JSON API).
        default_n: completions when the legacy request gives no ``n``.
        max_start_text: longest accepted prime in characters; longer requests get a 413 answer.
        prime_window: only the last this many characters of the prime are fed to the model.
        max_length: longest ``length`` of the JSON API.
        deadline: seconds of generation per request, after which it answers with what it has.
        workers: worker processes, each stepping all of its requests together as one batch; one per
            CPU core, up to 8.
        max_pending: requests being generated at once; beyond, the answer is 503 at once.
        max_request_bytes: largest request line, headers or body accepted (bytes).
        worker_grace: seconds past ``deadline`` a worker may take to answer; then it is taken for hung,
            killed and replaced, and its requests get 503.
        read_timeout: seconds a connection has to send a request head (from connecting or its last
            answer), and again its body; then it is closed (a late body gets 408).
        max_connections: open connections; one more closes the one idle the longest, or gets 503.
    """

    max_n: int = 10
    default_n: int = 1
    max_start_text: int = 16384
    prime_window: int = 256
    max_length: int = 2000
    deadline: float = 2.0
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    max_pending: int = 16
    max_request_bytes: int = 4 * 1024 * 1024
    worker_grace: float = 5.0
    read_timeout: float = 10.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        checks = {
            "--max-n": self.max_n >= 1, "--default-n": 1 <= self.default_n <= self.max_n,
            "--max-start-text": self.max_start_text >= 1, "--prime-window": self.prime_window >= 1,
            "--max-length": self.max_length >= 1, "--deadline": 0 < self.deadline < math.inf,
            "--workers": 1 <= self.workers <= MAX_PROCESSES, "--max-pending": self.max_pending >= self.workers,
            "--max-request-bytes": self.max_request_bytes >= 16384,
            "--worker-grace": self.worker_grace > 0, "--read-timeout": self.read_timeout > 0,
            "--max-connections": self.max_connections >= self.max_pending,
        }
        bad = [flag for flag, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{', '.join(bad)}: out of range (see --help; --default-n ≤ --max-n, "
                             f"--workers ≤ {MAX_PROCESSES}, "
                             "--max-pending ≥ --workers, --max-request-bytes ≥ 16384, "
                             "--max-connections ≥ --max-pending)")
