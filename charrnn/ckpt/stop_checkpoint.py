"""Writes a checkpoint when training is stopped by SIGTERM (``kill PID``, a scheduler's preemption) or Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class StopCheckpoint(L.Callback):
    """On SIGTERM, Lightning finishes the current step and stops; this saves ``DIRPATH/FILENAME.ckpt``
    there, and ``--ckpt_path last`` picks it up when it is the newest. Removed when a run ends well.

    Ctrl-C (SIGINT) while training is taken as SIGTERM; a second Ctrl-C stops at once, without a checkpoint.

    Only these: SIGTERM stops training between two steps, so the saved state is consistent. Any other
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
        self._sigint: signal.Handlers | object | None = None  # the SIGINT handler ours replaced

    @property
    def ckpt_path(self) -> Path:
        return Path(self.dirpath) / f"{self.filename}.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True  # after any resume has been restored
        self._take_sigint()

    def _take_sigint(self) -> None:
        """Ctrl-C calls Lightning's SIGTERM handler (set by now), which stops training after the step."""
        sigterm = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(sigterm):
            return  # Lightning handles no SIGTERM here: Ctrl-C stays as it was
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            signal.signal(signal.SIGINT, previous)  # the next Ctrl-C stops at once
            print(f"\nCtrl-C: stopping after this step and saving {self.ckpt_path} (Ctrl-C again stops now, "
                  "without it)", file=sys.stderr, flush=True)
            sigterm(signal.SIGTERM, frame)

        self._sigint = previous
        signal.signal(signal.SIGINT, on_sigint)

    def _give_back_sigint(self) -> None:
        if self._sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._sigint)
        self._sigint = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._give_back_sigint()
        if self._training and isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # explicit: Lightning logs a default

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._give_back_sigint()
        if stage == "fit":  # a finished run; validate/test may just have read the file
            trainer.strategy.remove_checkpoint(self.ckpt_path)
