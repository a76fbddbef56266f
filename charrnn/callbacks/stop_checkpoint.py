"""Writes a checkpoint when training is asked to stop (SIGTERM: ``kill PID``, ``docker stop``, a scheduler's
preemption; Ctrl-C in a terminal), and tells long steps that a stop was asked."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from charrnn.lightning_private import ask_to_stop

# The signals that ask a run to stop: training ends after the current step (or validation batch), saves
# interrupted.ckpt and exits. Lightning itself listens for SIGTERM; the others are routed to the same request.
# A second Ctrl-C stops at once, without a checkpoint.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


def stop_asked(trainer: L.Trainer) -> bool:
    """Whether a stop was asked: a step that can last long (a text sample) checks it as it goes and returns
    early, so that the stop comes within seconds."""
    return bool(trainer.received_sigterm)


def _stop_now(signum: int, frame: FrameType | None) -> None:
    if signal.getsignal(signum) is _stop_now:  # otherwise a Trainer listens and calls this on its way: it stops
        raise SIGTERMException


@contextmanager
def stop_at_once_until_the_trainer_listens() -> Iterator[None]:
    """SIGTERM while the command starts (parsing, reading a checkpoint, loading the corpus) raises
    ``SIGTERMException`` at once, which the CLI reports as a stop, instead of killing the process without a
    word. Once a Trainer installs its handler it keeps this one in its chain, where it does nothing: the
    Trainer stops the run after the current step. Only the main thread may handle signals; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    earlier = signal.signal(signal.SIGTERM, _stop_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, earlier)


class StopCheckpoint(L.Callback):
    """When a stop is asked (a signal of ``STOP_SIGNALS``), Lightning finishes the current step and stops;
    this saves ``DIRPATH/FILENAME.ckpt`` there, and ``--ckpt_path last`` picks it up when it is the newest.
    Removed when a run ends well.

    Only a stop asked this way: it ends training between two steps, so the saved state is consistent. Any
    other exception may strike halfway through a step (or come from a run that never started, when the
    weights are still fresh): resuming from such a state would be wrong, so the periodic
    checkpoints stay the way back. (Lightning's OnExceptionCheckpoint saves on every exception, and
    its presence makes a run without ``--ckpt_path`` resume silently; hence this class.)

    Args:
        dirpath: the directory of the run's ModelCheckpoint, so ``--ckpt_path last`` finds it; None: the
            directory the Trainer's ModelCheckpoint resolved (its own None puts it in the log version).
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | None, filename: str = "interrupted") -> None:
        if not filename:
            raise ValueError("StopCheckpoint: filename must not be empty")
        self.dirpath, self.filename = dirpath, filename
        self._training = False
        self._resolved: str | None = dirpath
        self._replaced: dict[int, Any] = {}

    @property
    def ckpt_path(self) -> Path | None:
        return Path(self._resolved) / f"{self.filename}.ckpt" if self._resolved is not None else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True  # after any resume has been restored
        if self._resolved is None and trainer.checkpoint_callback is not None:
            self._resolved = trainer.checkpoint_callback.dirpath
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals
        # Lightning has installed its SIGTERM handler by now: each stop signal goes through ours, which first
        # hands it on to the handler it replaces unless that is Python's default (a KeyboardInterrupt or an
        # exit in the middle of a step), then asks the Trainer to stop as Lightning does on SIGTERM.
        for signum in STOP_SIGNALS:
            earlier = signal.getsignal(signum)

            def handler(num: int, frame: FrameType | None, earlier: Any = earlier) -> None:
                if num == signal.SIGINT:
                    signal.signal(num, earlier)  # the next Ctrl-C interrupts as usual
                    print(f"\nCtrl-C: stopping after this step and saving {self.ckpt_path} (Ctrl-C again stops "
                          "now, without it)", file=sys.stderr, flush=True)
                elif callable(earlier) and earlier is not signal.default_int_handler:
                    earlier(num, frame)
                ask_to_stop(trainer)

            self._replaced[signum] = (earlier, handler)
            signal.signal(signum, handler)

    def _restore_signals(self) -> None:
        for signum, (earlier, handler) in self._replaced.items():
            if signal.getsignal(signum) is handler:  # not already restored by Lightning
                signal.signal(signum, earlier)
        self._replaced = {}

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signals()
        if self._training and isinstance(exception, SIGTERMException) and self.ckpt_path is not None:
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # explicit: Lightning logs its default

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_signals()
        if stage == "fit" and self.ckpt_path is not None:  # a finished run; validate/test may just have read it
            trainer.strategy.remove_checkpoint(self.ckpt_path)
