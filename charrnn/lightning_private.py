"""Every use of Lightning's private API in charrnn, in one place.

Lightning's public API does not tell whether a module is attached to a Trainer, whether the fit loop
validates right after the current batch, whether this step's metrics go to the logger, how many batches
of the epoch have been trained on, which log version a logger will take; nor does it offer to write
``last.ckpt`` now, to turn off ModelCheckpoint's ``-v1`` names once it is made, to build the Trainer from
settings and callbacks as LightningCLI does, to change how LightningCLI applies ``--ckpt_path`` to the
settings, or to leave out its lines that read as problems where there is none. Exact resume, cheap
logging, one run per checkpoint directory, the CLI's callback groups, its flags-against-checkpoint rule
and a quiet fresh run need those, so they are read from Lightning's internals here and nowhere else.
``tests/test_lightning_private.py`` checks each one against the installed Lightning: when a release
moves one, that test names it. ``pyproject.toml`` pins Lightning's minor version for the same reason.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger
from lightning_utilities.core import rank_zero


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer running ``module``, or None (``module.trainer`` raises when there is none)."""
    return module._trainer


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


def ask_to_stop(trainer: L.Trainer) -> None:
    """Asks the Trainer to stop as SIGTERM does: the loops raise ``SIGTERMException`` at the next step or
    validation batch (every rank, under DDP)."""
    trainer._signal_connector.received_sigterm = True


def disable_version_counter(callback: ModelCheckpoint) -> None:
    """A file name met again is replaced instead of getting a ``-v1`` twin (``enable_version_counter=False``)."""
    callback._enable_version_counter = False


def version_left_to_lightning(logger: Logger) -> bool:
    """Whether the logger picks its ``version_N`` itself (no version was given), not yet chosen."""
    return getattr(logger, "_version", 0) is None


def next_version(logger: Logger) -> int:
    """The ``version_N`` a TensorBoard or CSV logger would pick now."""
    return int(logger._get_next_version())


def set_version(logger: Logger, version: int) -> None:
    """Makes the logger write into ``version_{version}``."""
    logger._version = version


def build_trainer(cli: LightningCLI, config: dict[str, Any], callbacks: list[Callback]) -> L.Trainer:
    """The Trainer from ``config`` (the trainer settings) plus ``callbacks``, the way LightningCLI builds it
    (trainer_defaults, the config's callbacks, its SaveConfigCallback)."""
    return cli._instantiate_trainer(config, callbacks)


class CLIWithOwnCheckpointSettings(LightningCLI):
    """LightningCLI whose private step that applies ``--ckpt_path`` to the parsed settings (since Lightning
    2.5.5 it replaces every model setting with the checkpoint's hyperparameters, dropping the flags that
    differ) calls :meth:`apply_checkpoint_settings` instead, which subclasses override."""

    def _parse_ckpt_path(self) -> None:
        self.apply_checkpoint_settings()

    def apply_checkpoint_settings(self) -> None:
        super()._parse_ckpt_path()


# Lightning's lines that read as problems, or as advertisements, where there is none in a run of this CLI.
FALSE_ALARMS = (
    # RunDirectory's own lock file is there, and it moves an earlier run's files aside (saying so).
    r"Checkpoint directory .* exists and is not empty",
    # torch deprecates LeafSpec, which Lightning's CombinedLoader still builds (validate, test, predict).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Its size in MB counts 32 bits a weight, which is right: bf16-mixed keeps the weights in float32.
    r"Precision bf16-mixed is not supported by the model summary",
)
TIP = "💡 Tip:"  # the LitLogger advertisement Lightning prints at every Trainer without one


class _NoTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP)


def hide_false_alarms() -> None:
    """Leaves out the lines of :data:`FALSE_ALARMS` (Python warnings) and Lightning's tip (a log record of the
    logger its ``rank_zero_info`` writes to), so a fresh run shows only what matters."""
    for message in FALSE_ALARMS:
        warnings.filterwarnings("ignore", message=message)
    if not any(isinstance(f, _NoTip) for f in rank_zero.log.filters):
        rank_zero.log.addFilter(_NoTip())
