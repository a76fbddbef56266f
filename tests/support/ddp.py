"""For the multi-process tests: their ``train.py`` command line, and test-only callbacks that it loads.

``Record`` writes what each process saw to ``<out_dir>/rank<R>.json``; ``FailOnRank`` makes one
process raise, to show the others do not hang.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.support.paths import DEBUG, ROOT

BATCH, SEQ = 2, 64  # streams per process, characters per step
TIMEOUT = 120  # seconds for one run of a few steps on 2 processes


def train_args(*extra: str, ddp: bool = True) -> list[str]:
    """``train.py fit`` on tiny.txt with the debug config; with ``ddp``, on 2 CPU processes (configs/ddp.yaml)."""
    overlay = ["--config", str(ROOT / "configs" / "ddp.yaml"), "--trainer.devices", "2"] if ddp else []
    return [str(ROOT / "train.py"), "fit", "--config", DEBUG, *overlay,
            "--trainer.accelerator", "cpu", "--data.input_txt", "tiny.txt", "--data.url", "null",
            "--data.batch_size", str(BATCH), "--data.seq_length", str(SEQ), *extra]


def record(out_dir: str = "rec") -> list[str]:
    """The flags that add ``Record`` writing into ``out_dir``."""
    return ["--trainer.callbacks+=tests.support.ddp.Record", "--trainer.callbacks.out_dir", out_dir]


class Record(L.Callback):
    """Records each training batch, the final weights, the carried state and the best checkpoint.

    Args:
        out_dir: where ``rank<R>.json`` is written at the end of training.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[dict] = []
        self.val_losses: list[float] = []
        self.hidden: list[float] | None = None
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: tuple,
                             batch_idx: int) -> None:
        x, y = batch
        self.batches.append({"step": trainer.global_step, "batch_idx": batch_idx, "x": x.tolist(), "y": y.tolist()})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict,
                           *_: object) -> None:
        self.losses.append(float(outputs["loss"]))
        hidden = pl_module.hidden  # the carried state after this batch (validation resets it later)
        first = hidden[0] if isinstance(hidden, tuple) else hidden
        self.hidden = None if first is None else first.detach().double().flatten().tolist()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            self.val_losses.append(float(trainer.callback_metrics["val/loss"]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = [cb.best_model_path for cb in trainer.checkpoint_callbacks
                if isinstance(cb, ModelCheckpoint) and cb.monitor]
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "precision": trainer.precision,
            "losses": self.losses,
            "batches": self.batches,
            "params": {k: v.detach().double().flatten().tolist() for k, v in pl_module.state_dict().items()},
            "hidden": self.hidden,
            "buffers": [name for name, _ in pl_module.named_buffers()],
            "val_losses": self.val_losses,
            "best_model_path": best,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class FailOnRank(L.Callback):
    """Raises on process ``rank`` at training step ``step``; the other processes carry on into it.

    Args:
        rank: the global rank that fails.
        step: the optimizer step at which it fails.
    """

    def __init__(self, rank: int = 1, step: int = 2) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer: L.Trainer, *_: object) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError(f"deliberate failure on rank {self.rank} at step {self.step} (pid {os.getpid()})")


def flat_params(record: dict) -> torch.Tensor:
    return torch.cat([torch.tensor(v, dtype=torch.float64) for _, v in sorted(record["params"].items())])
