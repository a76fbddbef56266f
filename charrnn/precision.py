"""``--trainer.precision`` on a CPU: measured, not assumed.

``fit`` with no precision given times the model's own training pass in ``32-true`` and ``bf16-mixed``
on this CPU at start (briefly) and trains in the faster one: bfloat16 wins where the CPU
multiplies it natively (AVX-512 BF16, AMX) and loses where it is emulated (AVX2).
A mixed precision that was asked for and is slower here is kept, with one line saying so. Where the CPU
has no low-precision LSTM kernel, the LSTM layers run in float32 (:meth:`CharRNNNet._run`), also said.

Under DDP the processes Lightning launches take the first process's measured choice from the
environment, so every rank trains in the same precision.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from charrnn.kernel_choice import Choice, choose, cpu_description, lowp_lstm_runs, time_alternating
from charrnn.net import CharRNNNet

if TYPE_CHECKING:
    from charrnn.model import CharRNN

ENV = "CHARRNN_MEASURED_PRECISION"
MIXED = {"bf16-mixed", "16-mixed", "bf16", "16"}  # on a CPU Lightning runs all four as bfloat16 autocast


def runs_on_cpu(trainer: dict[str, Any]) -> bool:
    accelerator = trainer.get("accelerator")
    return accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())


def step_seconds(net: CharRNNNet, batch_size: int, seq_length: int) -> dict[str, float]:
    """Seconds for a forward and backward pass of ``net`` on ``batch_size`` streams of up to 8 characters,
    in ``32-true`` and ``bf16-mixed``. The global random generators and the gradients are left as found."""
    x = torch.zeros(batch_size, min(seq_length, 8), dtype=torch.long)  # (B, T)

    def run(autocast: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, _ = net(x)  # (B, T, V)
        logits.float().sum().backward()

    with torch.random.fork_rng(devices=[]):
        try:
            return time_alternating({"32-true": lambda: run(False), "bf16-mixed": lambda: run(True)}, budget=0.5)
        finally:
            net.zero_grad(set_to_none=True)


def settle(trainer: dict[str, Any], net: CharRNNNet, batch_size: int, seq_length: int, fitting: bool) -> str | None:
    """The precision to train ``net`` with on a CPU, said in one line; None leaves ``trainer``'s as it is."""
    given = trainer.get("precision")
    if not runs_on_cpu(trainer):
        return None
    if fitting and str(given) == "16-true":
        rank_zero_warn("--trainer.precision 16-true on a CPU: weights, gradients and Adam's state all in float16, "
                       "without loss scaling; training tends to diverge. Use --trainer.precision bf16-mixed or 32-true")
    precision = given
    if (fitting and given is None) or str(given) in MIXED:
        choice = _measured(net, batch_size, seq_length)
        if given is None and choice is None:
            rank_zero_info("--trainer.precision 32-true: a process launched by another measures nothing; give "
                           "--trainer.precision to choose")
        elif given is None:
            precision = choice.chosen
            rank_zero_info(f"--trainer.precision {choice.chosen} ({choice.describe()}; CPU {cpu_description()}); "
                           "give --trainer.precision to choose")
        elif choice is not None and choice.chosen == "32-true":
            rank_zero_warn(f"--trainer.precision {given}: this CPU only emulates bfloat16 ({cpu_description()}): a "
                           f"bf16-mixed step takes {choice.ratio('bf16-mixed'):.1f}x the time of 32-true (measured "
                           "at start); --trainer.precision 32-true is faster here")
    if str(precision) in MIXED and _has_lstm(net) and not lowp_lstm_runs(torch.bfloat16):
        rank_zero_info(f"--trainer.precision {precision}: this CPU has no bfloat16 LSTM kernel (oneDNN's needs "
                       "AVX-512), so the LSTM layers run in float32 and the rest in bfloat16")
    return precision if given is None else None


def for_run(trainer: dict[str, Any], model: CharRNN, batch_size: int, seq_length: int, fitting: bool) -> Any:
    """The ``--trainer.precision`` a run trains ``model`` with: the given one, or on a CPU the measured one
    (:func:`settle`). The CUDA-graph step keeps the given one: it runs in float32 (checked before)."""
    if model.hparams.cuda_graph:
        return trainer.get("precision")
    return settle(trainer, model.net, batch_size, seq_length, fitting) or trainer.get("precision")


def _measured(net: CharRNNNet, batch_size: int, seq_length: int) -> Choice | None:
    """This process's measurement, or the first process's under DDP; None in a launched process without it."""
    if "LOCAL_RANK" in os.environ:  # launched by Lightning's DDP (ranks > 0) or by torchrun
        inherited = os.environ.get(ENV)
        if inherited is None:
            return None
        chosen, ratio = inherited.split(":")
        other = "bf16-mixed" if chosen == "32-true" else "32-true"
        return Choice(chosen, "32-true", {chosen: 1.0, other: float(ratio)})
    choice = choose(step_seconds(net, batch_size, seq_length), default="32-true")
    other = "bf16-mixed" if choice.chosen == "32-true" else "32-true"
    os.environ[ENV] = f"{choice.chosen}:{choice.ratio(other)}"
    return choice


def _has_lstm(net: CharRNNNet) -> bool:
    return any(isinstance(m, torch.nn.LSTM) for m in net.modules())
