"""One training run at a time per checkpoint directory, each run in a log version of its own, and no
earlier run's checkpoints beside a new one's (so ``last.ckpt`` is always the newest run's)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from charrnn.ckpt.find import shown
from charrnn.ckpt.load import CheckpointError
from charrnn.ckpt.stop_checkpoint import StopCheckpoint
from charrnn.lightning_private import disable_version_counter, next_version, set_version

LOCK_NAME = ".lock"
EARLIER_PREFIX = "earlier-"


class DirectoryInUse(CheckpointError):
    """Another process trains into the same checkpoint directory."""


class RunDirectory(L.Callback):
    """The CLI calls ``start`` before it hands the run to the Trainer, on global rank zero only (told
    by the environment: the Trainer's ranks are known only after it has created the log directory).

    - ``fit`` locks each checkpoint directory (``flock`` on ``DIR/.lock``, released when the process
      ends, however it ends): a second run there is refused, naming the process that holds it.
    - A fit that does not resume from a checkpoint of that directory (no ``--ckpt_path``, or a file
      elsewhere) moves the checkpoints it finds there into ``DIR/earlier-<time of the newest>/``:
      ModelCheckpoint would otherwise write ``last-v1.ckpt`` beside the old run's ``last.ckpt``.
    - ModelCheckpoint replaces a file of the same name instead of writing ``NAME-v1.ckpt`` beside it.
    - Every stage claims a fresh ``version_N`` of its TensorBoard/CSV logger with an exclusive
      ``mkdir``: two runs started together would otherwise both pick the same N.

    Args:
        claim: the loggers whose version was left to Lightning (the CLI names them before anything
            reads their version).
    """

    def __init__(self, claim: list[Logger] | None = None) -> None:
        self.claim = claim or []
        self._locks: list[IO[str]] = []
        self._made: list[Path] = []  # directories made for the locks, outermost first

    def start(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, ckpt_path: str | None) -> None:
        """``ckpt_path``: the checkpoint file the run starts from, if any."""
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint):
                # What a directory holds is this run's (earlier runs' files are moved aside below): a name
                # that exists is this run's own file, saved again after a resume, so it is replaced, never
                # joined by a "-v1" copy (which left last.ckpt behind after resuming from a step=N.ckpt).
                disable_version_counter(cb)
        if not global_zero_by_environment():
            return
        if stage == "fit":
            dirs = checkpoint_dirs(trainer)
            try:
                for directory in dirs:
                    self._lock(directory)
            except DirectoryInUse:
                self._unlock()
                raise
            special = ckpt_path and not Path(ckpt_path).is_file()  # Lightning's "best", "hpc"
            resumed = Path(ckpt_path).resolve().parent if ckpt_path and not special else None
            for directory in dirs:
                if not special and resumed != directory.resolve():
                    move_aside(directory, pl_module)
        for logger in self.claim:
            claim_version(logger)

    def _lock(self, directory: Path) -> None:
        self._made += [d for d in (*reversed(directory.parents), directory) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        f = open(directory / LOCK_NAME, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise DirectoryInUse(f"{shown(directory)} is in use by another training run ({holder}). Wait for it to end "
                                 "or stop it, or give this run another checkpoint directory") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        f.flush()
        self._locks.append(f)

    def _unlock(self) -> None:
        for f in self._locks:
            f.close()  # closing releases the flock
        self._locks = []

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._unlock()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A run that failed before writing anything leaves no checkpoint directory behind."""
        self._unlock()
        for directory in reversed(self._made):
            (directory / LOCK_NAME).unlink(missing_ok=True)
            try:
                directory.rmdir()  # only if empty
            except OSError:
                break
        self._made = []


def global_zero_by_environment() -> bool:
    """Whether this process is (or will be) global rank zero: the first process of the first node,
    as torchrun, SLURM, Lightning's own launcher and the README's multi-node commands set them."""
    return rank_zero_only.rank == 0 and all(os.environ.get(v, "0") == "0" for v in ("NODE_RANK", "GROUP_RANK"))


def checkpoint_dirs(trainer: L.Trainer) -> list[Path]:
    found = [cb.dirpath for cb in trainer.callbacks if isinstance(cb, (ModelCheckpoint, StopCheckpoint)) and cb.dirpath]
    return sorted({Path(os.path.abspath(d)) for d in found})


def move_aside(directory: Path, pl_module: L.LightningModule) -> None:
    """Moves the ``*.ckpt`` files of ``directory`` into ``earlier-<time of the newest>/`` there."""
    old = [p for p in directory.glob("*.ckpt") if p.is_file()]
    if not old:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in old)))
    target = directory / f"{EARLIER_PREFIX}{stamp}"
    n = 0
    while True:
        try:
            target.mkdir()
            break
        except FileExistsError:
            n += 1
            target = directory / f"{EARLIER_PREFIX}{stamp}-{n}"
    for p in old:
        p.rename(target / p.name)
    init = pl_module.hparams.get("init_from")
    if init and Path(init).resolve().parent == directory.resolve() and (target / Path(init).name).is_file():
        pl_module.hparams.init_from = str(target / Path(init).name)  # fine-tuning from a file just moved
    rank_zero_info(f"A new run in {shown(directory)}: the {len(old)} checkpoints of the earlier run there are now "
                   f"in {shown(target)} (to continue that run instead, move them back and use --ckpt_path last)")


def claim_version(logger: Logger) -> None:
    """Gives ``logger`` the next ``version_N`` that no other process has taken (an exclusive mkdir)."""
    if not isinstance(logger, (TensorBoardLogger, CSVLogger)):
        return
    root = Path(logger.root_dir)
    root.mkdir(parents=True, exist_ok=True)
    n = next_version(logger)
    while True:
        try:
            (root / f"version_{n}").mkdir()
            break
        except FileExistsError:
            n += 1
    set_version(logger, n)  # what Lightning would have picked, had no other run been starting
