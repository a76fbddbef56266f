"""Callbacks that mark a moment of a run in a file, so that a test can send a real signal during a long step."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class TouchAt(L.Callback):
    """Creates the file ``path`` after optimizer step ``step`` (listed before the samples callback, so just
    before that step's text sample begins)."""

    def __init__(self, path: str, step: int) -> None:
        self.path, self.step = Path(path), step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            self.path.touch()


class SlowValidation(L.Callback):
    """Each validation batch (sanity check excepted) takes ``pause`` seconds more and adds a line to ``path``."""

    def __init__(self, path: str, pause: float) -> None:
        self.path, self.pause = Path(path), pause

    def on_validation_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.sanity_checking:
            return
        with open(self.path, "a") as f:
            f.write(f"validation batch after step {trainer.global_step}\n")
        time.sleep(self.pause)


def entry(cls: type, **init_args: object) -> str:
    """An overlay callback entry for one of these classes."""
    args = "".join(f"        {k}: {v}\n" for k, v in init_args.items())
    return f"    - class_path: tests.support.stop.{cls.__name__}\n      init_args:\n{args}"
