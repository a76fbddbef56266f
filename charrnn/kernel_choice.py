"""Speed choices measured on the machine that runs them, never assumed from a list of CPU flags.

The same kernel is the fastest on one CPU and ten times the slowest on the next: bfloat16 products run
natively with AVX-512 BF16 or AMX and are emulated (far slower than float32) on an AVX2 laptop; int8
products beat float where the CPU has VNNI and lose without it; oneDNN has no bfloat16 LSTM below
AVX-512 at all. So each choice times its candidates on the real model's shapes, alternating them so
that a burst of load from elsewhere falls on all of them, and keeps the default unless another is
clearly faster. The reason, with the measured ratio, is for the caller to print.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# Another candidate is taken only when it needs at most this share of the default's time: a choice that
# flipped with the noise of a shared machine would make two runs of one command differ.
MARGIN = 0.85

_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
             "asimd", "bf16", "i8mm", "sve")


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The CPU's flags that decide which kernels are fast (vector width, bf16, int8 dot products)."""
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:
        return []
    return [name for name in _FEATURES if name in flags]


def cpu_description() -> str:
    """ATen's vector capability and the CPU's relevant flags, e.g. ``AVX512 (avx2, fma, avx512f, ...)``:
    what a measured figure depends on, for benchmark headers and start lines."""
    return f"{torch.backends.cpu.get_cpu_capability()} ({', '.join(cpu_features()) or 'flags unknown'})"


@dataclass(frozen=True)
class Choice:
    """The fastest of some candidates (``chosen``) and each one's seconds per call."""

    chosen: str
    default: str
    seconds: dict[str, float]

    def ratio(self, name: str) -> float:
        """How many times the chosen candidate's time ``name`` takes."""
        return self.seconds[name] / self.seconds[self.chosen]

    def describe(self) -> str:
        """E.g. ``1.90x faster than float here, measured at start`` or ``int8 6.60x the time here, ...``."""
        if self.chosen != self.default:
            return f"{self.ratio(self.default):.2f}x faster than {self.default} here, measured at start"
        others = ", ".join(f"{n} {self.ratio(n):.2f}x the time" for n in self.seconds if n != self.chosen)
        return f"{others} here, measured at start"


def choose(seconds: dict[str, float], default: str, margin: float = MARGIN) -> Choice:
    """The default, unless the fastest other candidate needs at most ``margin`` of its time."""
    fastest = min(seconds, key=seconds.__getitem__)
    chosen = fastest if seconds[fastest] <= margin * seconds[default] else default
    return Choice(chosen, default, dict(seconds))


def time_alternating(candidates: dict[str, Callable[[], object]], rounds: int = 3,
                     budget: float = 1.0) -> dict[str, float]:
    """The best seconds per call of each candidate: one warm-up call each, then up to ``rounds`` rounds
    that run every candidate once in turn, stopping after the first round that ends past ``budget``
    seconds (so an emulated kernel that is 100x slower costs about one call)."""
    best = {name: float("inf") for name in candidates}
    for fn in candidates.values():
        fn()
    started = time.perf_counter()
    for _ in range(rounds):
        for name, fn in candidates.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
        if time.perf_counter() - started > budget:
            break
    return best


@functools.cache
def lowp_lstm_runs(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether an LSTM runs on this CPU under ``dtype`` autocast. oneDNN has no bfloat16/float16 LSTM
    kernel below AVX-512 and raises; found out once per process on a tiny LSTM, without touching the
    global random generators (a resumed run must draw what the uninterrupted one drew)."""
    with torch.random.fork_rng(devices=[]):
        lstm = nn.LSTM(4, 4, batch_first=True)
        x = torch.zeros(1, 2, 4, requires_grad=True)
        try:
            with torch.autocast("cpu", dtype=dtype):
                out, _ = lstm(x)
            out.float().sum().backward()
        except RuntimeError:
            return False
    return True
