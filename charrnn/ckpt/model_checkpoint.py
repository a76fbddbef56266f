"""Lightning's ModelCheckpoint, with last.ckpt brought up to date when training ends."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from charrnn.lightning_private import last_saved_step, save_last


class ModelCheckpoint(LightningModelCheckpoint):
    """Takes the same arguments as Lightning's.

    Lightning writes ``last.ckpt`` only beside another save, and at the end of training only if it
    never saved one. A run whose ``max_steps`` is not a multiple of ``every_n_train_steps`` would
    then end with a ``last.ckpt`` that is up to N-1 steps old: sample.py and ``--ckpt_path last``
    would use stale weights. This writes it once more when training ends past the last save.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and last_saved_step(self) < trainer.global_step:
            save_last(self, trainer)
