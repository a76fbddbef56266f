"""``UpToDateCheckpoint``: Lightning's ModelCheckpoint, with last.ckpt brought up to date when training ends,
the best-model state in every checkpoint current, and groups that cannot write (and so delete) each other's
files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.ckpt.resume_state import validation_follows
from charrnn.errors import UsageError
from charrnn.lightning_private import last_saved_step, save_last

SAMPLE_STEPS = (1, 10, 500, 12345)  # file names are compared as they come out at these steps

# The head of the key a checkpoint holds this callback's state under (``checkpoint["callbacks"]``); Lightning
# writes the settings after it. Lightning would take the class's name: checkpoints written while the class was
# called ModelCheckpoint hold that one, and keeping it lets them and newer ones resume alike.
STATE_NAME = "ModelCheckpoint"


class UpToDateCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with its files up to date; takes the same arguments.

    Lightning writes ``last.ckpt`` only beside another save, and at the end of training only if it
    never saved one. A run whose ``max_steps`` is not a multiple of ``every_n_train_steps`` would
    then end with a ``last.ckpt`` that is up to N-1 steps old: sample.py and ``--ckpt_path last``
    would use stale weights. This writes it once more when training ends past the last save.

    A step-triggered save at a step that is followed by a validation waits until that validation has
    been seen by every ModelCheckpoint. Lightning would write it first, holding the best-model state
    (top-k, best path) from before the validation of its own step, and a resume from it forgot the best
    checkpoint that validation wrote: a third ``best-*`` file beside ``save_top_k: 2``, and a "Best
    checkpoint" line naming a worse one. The weights are the same either way.

    Two ModelCheckpoints of one directory whose file names can be the same are refused when training
    starts: the rotation of one would delete the files of the other.
    """

    _deferred: tuple[Any, Any, int] | None = None  # the arguments of a save that waits for the validation

    @property
    def state_key(self) -> str:
        return STATE_NAME + super().state_key.removeprefix(type(self).__qualname__)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        check_distinct_names(trainer)
        self._deferred = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if pl_module.automatic_optimization and ours_last(trainer) and validation_follows(trainer):
            self._deferred = (outputs, batch, batch_idx)
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if checkpoint_callbacks(trainer)[-1] is not self:
            return
        # The last to see the validation: every best-model state is current now.
        for cb in checkpoint_callbacks(trainer):
            if isinstance(cb, UpToDateCheckpoint) and cb._deferred is not None:
                deferred, cb._deferred = cb._deferred, None
                ModelCheckpoint.on_train_batch_end(cb, trainer, pl_module, *deferred)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and last_saved_step(self) < trainer.global_step:
            save_last(self, trainer)


def checkpoint_callbacks(trainer: L.Trainer) -> list[ModelCheckpoint]:
    """The trainer's ModelCheckpoints, in the order their hooks run."""
    return [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]


def ours_last(trainer: L.Trainer) -> bool:
    """Whether the ModelCheckpoint whose hooks run last is this class (it writes what waited for a validation)."""
    callbacks = checkpoint_callbacks(trainer)
    return bool(callbacks) and isinstance(callbacks[-1], UpToDateCheckpoint)


def _names(cb: ModelCheckpoint) -> set[tuple[str, str]]:
    """The file names ``cb`` writes at the sample steps (``last.ckpt`` too when it keeps one), each with the
    setting it comes from."""
    out = set()
    for step in SAMPLE_STEPS:
        metrics = {"step": step, "epoch": 0}
        if cb.save_top_k != 0:
            out.add((Path(cb.format_checkpoint_name(metrics)).name, f"filename {cb.filename!r}"))
        if cb.save_last:
            out.add((Path(cb.format_checkpoint_name(metrics, cb.CHECKPOINT_NAME_LAST)).name, "save_last"))
    return out


def check_distinct_names(trainer: L.Trainer) -> None:
    """Refuses two ModelCheckpoints of one directory that would write a file of the same name. The file would
    be both groups' at once, and the top-k rotation of one would delete what the other keeps (``step=10.ckpt``
    of ``--checkpoint`` removed by ``--best_checkpoints.filename "step={step}"``).

    Raises:
        UsageError: naming the directory, the file and the two settings.
    """
    seen: dict[tuple[Path, str], str] = {}
    for cb in trainer.callbacks:
        # A StopCheckpoint without a directory of its own uses the one the Trainer's ModelCheckpoint resolved.
        directory = cb.dirpath if isinstance(cb, StopCheckpoint) else None
        if isinstance(cb, StopCheckpoint) and directory is None and trainer.checkpoint_callback is not None:
            directory = trainer.checkpoint_callback.dirpath
        if directory is not None:
            seen[Path(directory).resolve(), f"{cb.filename}.ckpt"] = "StopCheckpoint's file on SIGTERM"
    for cb in checkpoint_callbacks(trainer):
        if cb.dirpath is None:
            continue
        directory = Path(cb.dirpath).resolve()
        for name, setting in sorted(_names(cb)):
            if (directory, name) in seen:
                raise UsageError(
                    f"two checkpoint settings would both write {Path(cb.dirpath) / name} ({seen[directory, name]} and "
                    f"{setting}), and the rotation of one would delete the other's files: give "
                    "--best_checkpoints.filename and --checkpoint.filename patterns that differ "
                    "(or --checkpoint.dirpath another directory)")
            seen[directory, name] = setting
