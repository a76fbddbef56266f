"""Writes a checkpoint when training is stopped by SIGTERM (``kill PID``, a scheduler's preemption)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class StopCheckpoint(L.Callback):
    """On SIGTERM, Lightning finishes the current step and stops; this saves ``DIRPATH/FILENAME.ckpt``
    there, and ``--ckpt_path last`` picks it up when it is the newest. Removed when a run ends well.

    Only SIGTERM: it stops training between two steps, so the saved state is consistent. Any other
    exception may strike halfway through a step (or come from a run that never started, when the
    weights are still fresh): resuming from such a state would be wrong, so the periodic
    checkpoints stay the way back. (Lightning's OnExceptionCheckpoint saves on every exception, and
    its presence makes a run without ``--ckpt_path`` resume silently; hence this class.)

    Args:
        dirpath: the directory of the run's ModelCheckpoint, so ``--ckpt_path last`` finds it.
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        if not filename:
            raise ValueError("StopCheckpoint: filename must not be empty")
        self.dirpath, self.filename = dirpath, filename
        self._training = False

    @property
    def ckpt_path(self) -> Path:
        return Path(self.dirpath) / f"{self.filename}.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True  # after any resume has been restored

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._training and isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # a finished run; validate/test may just have read the file
            trainer.strategy.remove_checkpoint(self.ckpt_path)
