"""The whole training step as one CUDA graph: ``--model.cuda_graph true``.

The models of this project are small enough that a GPU spends most of a training step waiting for
the next of a few hundred kernel launches. Recorded once as a ``torch.cuda.CUDAGraph`` (forward,
loss, backward, gradient clipping and the optimizer update) the step is replayed with one launch.

A graph replays fixed memory, so everything the step reads or writes stays where it is: the batch is
copied into static input tensors, the carried state lives in static tensors that the step itself
updates, and the weights, gradients and optimizer state are updated in place. The learning rate is a
tensor that the scheduler fills. Without CUDA there is no graph and the same step runs eagerly (how
its tests run on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from charrnn.errors import UsageError
from charrnn.net import State, map_state, state_tensors, zero_some_rows

WARMUP = 3  # eager steps on a side stream before capture: lazy state (Adam's moments, cuDNN) is created


@dataclass(frozen=True)
class Clip:
    """The trainer's gradient clipping (``--trainer.gradient_clip_val`` and ``_algorithm``)."""

    value: float
    algorithm: Literal["norm", "value"] = "norm"


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Switches an Adam-family optimizer to its capturable form: step counts on the device and the
    learning rate as a device tensor, which schedulers then fill in place."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if group.get("fused"):  # the multi-tensor kernels are the capturable path this project relies on
            group["fused"], group["foreach"] = False, True
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


def portable_optimizer_state(saved: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict as an eager run writes it (float learning rate, not capturable), so
    that a checkpoint of a graph run resumes anywhere, with or without ``--model.cuda_graph``."""
    groups = []
    for group in saved["param_groups"]:
        group = dict(group)
        if isinstance(group.get("lr"), Tensor):
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = False
        groups.append(group)
    return {**saved, "param_groups": groups}


class GraphStep:
    """One training step over static tensors, captured as a CUDA graph when the model is on a GPU.

    Args:
        net: the network; its parameters are the optimizer's.
        optimizer: Adam or AdamW (made capturable on a GPU).
        batch: a batch of the shape every later batch has; ``(x, y)``, each (B, T).
        state: the carried state of that batch (its shape and type; the values are copied per step).
        clip: gradient clipping, or None.
        reset_prob: ``state_reset_prob``: the chance per stream and step that its state is zeroed.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, Tensor],
                 state: State, clip: Clip | None, reset_prob: float) -> None:
        self.net, self.optimizer, self.clip, self.reset_prob = net, optimizer, clip, reset_prob
        self.x, self.y = (t.clone() for t in batch)
        self.state: State = map_state(Tensor.clone, state)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        device = self.x.device
        self.loss = torch.zeros((), device=device)
        self.grad_norm = torch.zeros((), device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda":
            make_capturable(optimizer, device)
            self._capture()

    def __call__(self, batch: tuple[Tensor, Tensor], state: State | None) -> tuple[Tensor, Tensor]:
        """Trains on ``batch`` from ``state`` (None: zeros); returns (loss, gradient norm before
        clipping). The state after the batch is left in ``self.state``."""
        x, y = batch
        if x.shape != self.x.shape:
            raise ValueError(f"--model.cuda_graph: a batch of shape {tuple(x.shape)} after batches of "
                             f"{tuple(self.x.shape)}; a captured step takes one shape")
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        if state is None:
            for s in state_tensors(self.state):
                s.zero_()
        elif state is not self.state:
            for s, v in zip(state_tensors(self.state), state_tensors(state), strict=True):
                s.copy_(v)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()
        return self.loss, self.grad_norm

    def _body(self) -> None:
        """The step itself, written so that it can be captured: no host syncs, no new outputs."""
        state = zero_some_rows(self.state, self.reset_prob) if self.reset_prob > 0 else self.state
        logits, new = self.net(self.x, state)
        loss = F.cross_entropy(logits.flatten(0, 1), self.y.flatten())
        self.optimizer.zero_grad(set_to_none=True)  # backward writes fresh gradients (in the graph's memory)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.clip is None:
            norm = torch.nn.utils.get_total_norm(grads)
        elif self.clip.algorithm == "norm":
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip.value)
        else:
            norm = torch.nn.utils.get_total_norm(grads)
            torch.nn.utils.clip_grad_value_(self.params, self.clip.value)
        self.optimizer.step()
        self.loss.copy_(loss.detach())
        self.grad_norm.copy_(norm)
        for s, n in zip(state_tensors(self.state), state_tensors(new), strict=True):
            s.copy_(n.detach())

    def _capture(self) -> None:
        """Records the step. The warm-up steps it needs first are undone: weights, optimizer state,
        carried state and random numbers are as before, so the first replay is the first step."""
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self._restore(saved)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "params": [p.detach().clone() for p in self.params],
            "optimizer": {id(p): {k: v.clone() if isinstance(v, Tensor) else v for k, v in s.items()}
                          for p, s in self.optimizer.state.items()},
            "state": [s.clone() for s in state_tensors(self.state)],
            "rng": torch.cuda.get_rng_state(self.x.device) if self.x.is_cuda else torch.get_rng_state(),
        }

    @torch.no_grad()
    def _restore(self, saved: dict[str, Any]) -> None:
        for p, v in zip(self.params, saved["params"], strict=True):
            p.copy_(v)
        for p, state in self.optimizer.state.items():
            before = saved["optimizer"].get(id(p), {})
            for k, v in state.items():
                if isinstance(v, Tensor) and k in before:  # in place: the graph is recorded on these tensors
                    v.copy_(before[k])
                elif isinstance(v, Tensor):  # created by the warm-up: a fresh Adam state is all zeros
                    v.zero_()
        for s, v in zip(state_tensors(self.state), saved["state"], strict=True):
            s.copy_(v)
        if self.x.is_cuda:
            torch.cuda.set_rng_state(saved["rng"], self.x.device)
        else:
            torch.set_rng_state(saved["rng"])


class GraphTraining(L.Callback):
    """CharRNN's training with ``--model.cuda_graph true``: what its hooks do instead of Lightning's own
    backward, gradient zeroing and optimizer step, which stand aside because :meth:`step` does all three.

    As a callback (CharRNN's ``configure_callbacks``) it refuses at the start of fit the settings a graph
    cannot follow, and writes checkpoints whose optimizer state resumes with or without a graph.

    Args:
        reset_prob: ``state_reset_prob``: the chance per stream and step that its state is zeroed.
    """

    def __init__(self, reset_prob: float) -> None:
        self.reset_prob = reset_prob
        self.graph: GraphStep | None = None

    def step(self, trainer: L.Trainer, net: nn.Module, optimizer: torch.optim.Optimizer,
             batch: tuple[Tensor, Tensor], state: State | None) -> tuple[Tensor, Tensor, State]:
        """Trains on ``batch`` from ``state`` (forward, backward, clipping, update); returns the loss, the
        gradient norm before clipping and the state after the batch. The graph is captured at the first
        step, and again when Lightning hands over another optimizer."""
        if self.graph is None or self.graph.optimizer is not optimizer:
            clip = trainer.gradient_clip_val
            algorithm = trainer.gradient_clip_algorithm or "norm"
            self.graph = GraphStep(net, optimizer, batch, net.zero_state(batch[0].size(0)),
                                   Clip(float(clip), algorithm) if clip else None, self.reset_prob)
        loss, grad_norm = self.graph(batch, state)
        # The graph's output tensors are overwritten by the next step.
        return loss.clone(), grad_norm.clone(), self.graph.state

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            raise UsageError(f"--model.cuda_graph true trains on one device; this run has {trainer.world_size}")
        if trainer.precision != "32-true":
            raise UsageError(f"--model.cuda_graph true needs --trainer.precision 32-true (not {trainer.precision})")
        if trainer.accumulate_grad_batches != 1:
            raise UsageError("--model.cuda_graph true updates the weights every step: "
                             "leave --trainer.accumulate_grad_batches at 1")
        if pl_module.device.type != "cuda":
            rank_zero_warn(f"--model.cuda_graph true: the model is on {pl_module.device.type}, so the step runs "
                           "uncaptured (CUDA graphs need a GPU)")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.graph is not None and "optimizer_states" in checkpoint:
            checkpoint["optimizer_states"] = [portable_optimizer_state(s) for s in checkpoint["optimizer_states"]]
