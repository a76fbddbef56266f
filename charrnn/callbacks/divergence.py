"""Stopping a run whose loss has diverged, before a checkpoint is written from its weights (pure float16 on
a CPU, warned about in :mod:`charrnn.precision`, is where that usually happens)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from charrnn.errors import UsageError
from charrnn.lightning_private import last_saved_step


class TrainingDiverged(UsageError):
    """The loss turned non-finite or exploded; the message names the last good checkpoint."""


def loss_limit(vocab_size: int) -> float:
    """Nats per character above which a loss has exploded: twice the loss of a uniform guess (ln V, where an
    untrained network starts), and at least 3 nats above it. Training only goes down from ln V; a model
    that does this much worse than guessing has left it (fp16 overflow, a learning rate far too high)."""
    uniform = math.log(max(vocab_size, 2))
    return uniform + max(uniform, 3.0)


class DivergenceStop(L.Callback):
    """Ends training with one line (``error: training diverged at step N ...``, exit status 2) when the loss
    turns non-finite or explodes, and before any checkpoint is written from those weights: the newest
    checkpoint (``last.ckpt``) stays the last good state, and the line names it.

    Explodes: the mean training loss over ``check_every_n_steps`` steps, or a validation loss, is above
    ``max_loss``. A mean over steps and the validation's mean over batches are far steadier than one
    batch, and the default bound (:func:`loss_limit`, 8.35 nats for 65 characters) is twice what an
    untrained network starts at: a normal run's noise stays far below it.

    Lightning's ``EarlyStopping(check_finite=True, divergence_threshold=...)`` checks only at validation or
    epoch end, stops as if training had ended well (exit status 0) and lets ModelCheckpoint write the
    diverged weights over ``last.ckpt`` at the end; ``detect_anomaly`` slows every step down several times
    and stops with a traceback. Hence this small callback.

    Args:
        check_every_n_steps: the training loss is summed on the device and read every this many steps (and
            before every checkpoint), so a GPU rarely waits for it.
        max_loss: nats per character above which the loss has exploded; None: :func:`loss_limit` of the
            vocabulary. Non-finite losses always stop the run.
    """

    def __init__(self, check_every_n_steps: int = 10, max_loss: float | None = None) -> None:
        if check_every_n_steps < 1:
            raise UsageError(f"--divergence.check_every_n_steps {check_every_n_steps}: give a whole number ≥1")
        self.check_every_n_steps, self.max_loss = check_every_n_steps, max_loss
        self._limit = math.inf
        self._reset()

    def _reset(self) -> None:
        self._sum: torch.Tensor | None = None  # of the training losses since the last check, on their device
        self._steps = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        vocab = pl_module.hparams.get("vocab") if hasattr(pl_module, "hparams") else None
        self._limit = self.max_loss if self.max_loss is not None else loss_limit(len(vocab)) if vocab else math.inf
        self._reset()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # Lightning divides the loss it hands here by the batches accumulated into one step.
        loss = loss.detach().float() * trainer.accumulate_grad_batches
        self._sum = loss if self._sum is None else self._sum + loss  # NaN and inf stay in the sum
        self._steps += 1
        if self._steps >= self.check_every_n_steps:
            self._check_training(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._check_training(trainer)
        val = trainer.callback_metrics.get("val/loss")
        if val is not None:
            self._stop_if(trainer, float(val), "the validation loss")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Raising here, before the file is written, keeps diverged weights out of every checkpoint. The last
        # step's update came after its loss: the weights themselves are checked too (one pass, per save only).
        if trainer.state.fn != TrainerFn.FITTING:
            return
        self._check_training(trainer)
        weights = [p.detach().isfinite().all() for p in pl_module.parameters()]
        if weights and not bool(torch.stack(weights).all()):
            self._stop_if(trainer, math.nan, "a weight")

    def _check_training(self, trainer: L.Trainer) -> None:
        if self._sum is None:
            return
        mean, steps = float(self._sum) / self._steps, self._steps
        self._reset()
        what = "the training loss" if steps == 1 else f"the mean training loss of the last {steps} steps"
        self._stop_if(trainer, mean, what)

    def _stop_if(self, trainer: L.Trainer, loss: float, what: str) -> None:
        bad = not math.isfinite(loss) or loss > self._limit
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):  # every process stops together
            return
        bound = f"above {self._limit:.2f}, --divergence.max_loss" if math.isfinite(loss) else "not finite"
        raise TrainingDiverged(
            f"training diverged at step {trainer.global_step}: {what} is {loss:.4g} ({bound}); stopped without "
            f"saving these weights. {last_good(trainer)} Try --trainer.precision 32-true (or bf16-mixed) or a lower "
            "--model.learning_rate")


def last_good(trainer: L.Trainer) -> str:
    """Names the newest checkpoint this run's ModelCheckpoints wrote (or found, on a resume)."""
    saved = [(last_saved_step(cb), bool(cb.last_model_path), cb.last_model_path or cb.best_model_path)
             for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]  # last.ckpt first among equals
    saved = [s for s in saved if s[2] and Path(s[2]).is_file()]
    if not saved:
        return "No checkpoint was written before it."
    step, _, path = max(saved)
    return f"The last good state is {path}" + (f" (step {step})." if step else ".")

