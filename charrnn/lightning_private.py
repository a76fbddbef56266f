"""Every use of Lightning's private API in charrnn, in one place.

Lightning's public API does not say (a) whether the fit loop validates right after the current
batch, (b) whether this step's metrics go to the logger, (c) how many batches of the epoch have been
trained on, or (d) how to write ``last.ckpt`` now. Exact resume and cheap logging need those answers,
so they are read from Lightning's internals here and nowhere else. ``tests/test_lightning_private.py``
checks each one against the installed Lightning: when a release moves one, that test names it.
``pyproject.toml`` pins Lightning's minor version for the same reason.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


def validation_follows_batch(trainer: L.Trainer) -> bool:
    """Whether the fit loop runs validation right after the current training batch."""
    loop = trainer.fit_loop.epoch_loop
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


def logger_writes_this_step(trainer: L.Trainer) -> bool:
    """Whether metrics logged in the current training step are handed to the logger (Lightning's own
    rule: ``log_every_n_steps``, 0 meaning never, and the last step before a stop)."""
    return bool(trainer._logger_connector.should_update_logs)


def batches_trained_this_epoch(trainer: L.Trainer) -> int:
    """Training batches of the current epoch already processed (restored by a resume)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The global step of the callback's latest save (0 before any)."""
    return int(callback._last_global_step_saved)


def save_last(callback: ModelCheckpoint, trainer: L.Trainer) -> None:
    """Writes the callback's ``last.ckpt`` now, with the metrics it would record."""
    candidates: dict[str, Any] = callback._monitor_candidates(trainer)
    callback._save_last_checkpoint(trainer, candidates)
