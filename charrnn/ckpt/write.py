"""Crash-safe, pickle-safe checkpoint files for the Trainer (the CLI installs this by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from charrnn.atomic import atomic_write
from charrnn.ckpt.load import read_checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Saves through a temporary file in the target directory that is fsynced and then renamed over
    the target, so a kill during a save leaves the previous file intact; loads with
    ``weights_only=True`` always, so resuming never runs code stored in a checkpoint, and checks what it
    loads as every reader does (:func:`~charrnn.ckpt.load.read_checkpoint`).

    Lightning's own save stages the file elsewhere and copies it (no fsync), and its load leaves
    ``weights_only`` to ``torch.load``'s default, which an environment variable can turn off.
    Local paths only.

    A checkpoint that the CLI has already read and checked (``--ckpt_path``) is handed over with
    :meth:`hand_over`, and Lightning's load of that file then takes it instead of reading it again.
    """

    def __init__(self) -> None:
        super().__init__()
        self._handed: tuple[Path, dict[str, Any]] | None = None

    def hand_over(self, path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
        self._handed = (Path(path).resolve(), checkpoint)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None,
                        ) -> dict[str, Any]:
        # Tensors stay on the CPU here; Lightning moves them where the model is.
        handed, self._handed = self._handed, None
        if handed is not None and handed[0] == Path(path).resolve():
            return handed[1]
        return read_checkpoint(os.fspath(path))
