"""A trial's training budget kept honest on a noisy machine: a number of steps, derived from the speed of
its training step measured before it starts.

A wall-clock limit (``--trainer.max_time``) would charge each trial for whatever else ran on the machine
meanwhile: on a shared CPU a trial that happens to run beside another job trains half the steps and loses
to a worse setting that ran alone. And a cosine schedule must know its length from the first step. So a
trial trains ``max_steps`` steps, where ``max_steps`` is what its step time allows in the budget, the step
timed as the fastest of many short runs (load only ever adds time, so the minimum is the machine's own
speed). A shape is timed again at each of its trials, and the fastest timing so far counts: a timing taken
in a burst of load is corrected by the next. The same count goes into the tuned overlay, so its training
is reproducible step for step; on a quiet machine it takes about the budget (plus Lightning's per-step
work and the validations, which the report shows as each trial's measured time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from charrnn import precision
from charrnn.kernel_choice import choose
from charrnn.net import CharRNNNet, detach_state
from charrnn.net_spec import Architecture

SHAPE_KEYS = ("model.model_type", "model.wordvec_size", "model.rnn_size", "model.num_layers",
              "model.layer_norm", "model.tie_weights", "data.batch_size", "data.seq_length", "trainer.precision")


def precision_of(config: Mapping[str, Any], vocab_size: int) -> str:
    """The precision ``fit`` trains in, for a resolved config (flag -> value): its own, else on a CPU the
    faster of ``32-true`` and ``bf16-mixed`` for this network, measured as ``fit`` measures it at start
    (:mod:`charrnn.precision`), else 32-true."""
    given = config.get("trainer.precision")
    if given is not None:
        return str(given)
    if not precision.runs_on_cpu({"accelerator": config.get("trainer.accelerator")}):
        return "32-true"
    seconds = precision.step_seconds(network(config, vocab_size), int(config["data.batch_size"]),
                                     int(config["data.seq_length"]))
    return choose(seconds, default="32-true").chosen


def network(config: Mapping[str, Any], vocab_size: int) -> CharRNNNet:
    """The trial's network, as ``fit`` would build it from ``config``."""
    return CharRNNNet(Architecture(vocab_size, config["model.model_type"], int(config["model.wordvec_size"]),
                                   int(config["model.rnn_size"]), int(config["model.num_layers"]),
                                   float(config["model.dropout"]), bool(config.get("model.layer_norm")),
                                   bool(config.get("model.tie_weights"))))


def shape_key(config: Mapping[str, Any]) -> str:
    """What a step's speed depends on, as text: trials of the same shape share one measurement."""
    return ",".join(f"{k.split('.')[-1]}={config.get(k)}" for k in SHAPE_KEYS)


def step_seconds(config: Mapping[str, Any], vocab_size: int, seconds: float = 2.0, rounds: int = 3,
                 steps: int = 3) -> float:
    """The fastest time of one training step (forward, backward, clipping, AdamW) of ``config``'s network and
    batch on the CPU, after a warm-up: the best of runs of ``steps`` steps, repeated for ``seconds`` (at least
    ``rounds`` runs), so that a short step is timed many times and meets the machine's quiet moments."""
    net = network(config, vocab_size)
    given = str(config.get("trainer.precision") or "32-true")
    mixed = "mixed" in given
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=not mixed)
    batch, length = int(config["data.batch_size"]), int(config["data.seq_length"])
    x = torch.randint(vocab_size, (batch, length))
    y = torch.randint(vocab_size, (batch, length))
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if given.startswith("bf16") else nullcontext()

    def step(state: Any) -> Any:
        with cast:
            logits, state = net(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        return detach_state(state)

    state = step(None)  # warm-up: first-call allocations and kernel choices
    best, until, done = float("inf"), time.perf_counter() + seconds, 0
    while done < rounds or time.perf_counter() < until:
        start = time.perf_counter()
        for _ in range(steps):
            state = step(state)
        best = min(best, (time.perf_counter() - start) / steps)
        done += 1
    return best


def steps_for(budget_s: float, seconds_per_step: float, reports: int) -> int:
    """Steps that fit in ``budget_s``, a multiple of ``reports`` (so the last validation is the last step)."""
    steps = int(budget_s / seconds_per_step) // reports * reports
    return max(reports, steps)
