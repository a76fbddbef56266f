"""Training throughput in characters per second, on the progress bar and in TensorBoard."""

from __future__ import annotations

import time

import lightning as L


class CharsPerSecond(L.Callback):
    """Logs ``train/chars_per_sec`` (all processes together), averaged over a window of steps.

    The clock stops for validation and checkpointing, so the figure is the training loop's own.

    Args:
        window: training steps per measurement.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._restart()

    def _restart(self, *_: object) -> None:
        self.start: float | None = None
        self.chars = 0
        self.steps = 0

    on_train_epoch_start = on_validation_end = on_save_checkpoint = _restart

    def on_train_batch_start(self, trainer: L.Trainer, *_: object) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object,
                           batch: tuple, batch_idx: int) -> None:
        self.chars += batch[0].numel() * trainer.world_size
        self.steps += 1
        if self.steps >= self.window and self.start is not None:
            rate = self.chars / (time.perf_counter() - self.start)
            pl_module.log("train/chars_per_sec", rate, prog_bar=True)
            self._restart()
