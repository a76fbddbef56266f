"""One training run at a time per checkpoint directory, each run in a log version of its own, and no
earlier run's checkpoints beside a new one's (so ``last.ckpt`` is always the newest run's)."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import lightning as L
from filelock import Timeout, UnixFileLock
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.ckpt.find import shown
from charrnn.ckpt.load import CheckpointError
from charrnn.errors import UsageError
from charrnn.lightning_private import disable_version_counter, next_version, set_version

LOCK_NAME = ".lock"
EARLIER_PREFIX = "earlier-"


class DirectoryInUse(CheckpointError):
    """Another process trains into the same checkpoint directory."""


class UnusableDirectory(UsageError):
    """A checkpoint directory that this run cannot write in (a file, read-only, a link as its lock)."""


class RunDirectory(L.Callback):
    """The CLI calls ``start`` before it hands the run to the Trainer, on global rank zero only (told
    by the environment: the Trainer's ranks are known only after it has created the log directory).

    - ``fit`` locks each checkpoint directory (``filelock``'s ``flock`` on ``DIR/.lock``, released when the
      process ends, however it ends): a second run there is refused, naming the process that holds it. The
      lock never writes through a symbolic link (``O_NOFOLLOW``): a ``.lock`` that is one is refused.
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
        self._locks: list[UnixFileLock] = []
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
            except UsageError:
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
        lock_path = directory / LOCK_NAME
        try:
            self._made += [d for d in (*reversed(directory.parents), directory) if not d.exists()]
            directory.mkdir(parents=True, exist_ok=True)
            lock = UnixFileLock(lock_path, blocking=False, fallback_to_soft=False, on_acquired=_write_holder)
            lock.acquire()
        except Timeout:
            raise DirectoryInUse(f"{shown(directory)} is in use by another training run ({_holder(lock_path)}). "
                                 "Wait for it to end or stop it, or give this run another checkpoint directory "
                                 "(--checkpoint.dirpath)") from None
        except OSError as e:
            raise unusable(directory, e) from None
        self._locks.append(lock)

    def _unlock(self) -> None:
        for lock in self._locks:
            lock.release()  # closing the file releases the flock
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


def _write_holder(fd: int) -> None:
    """Writes who holds the lock into it, through the locked descriptor (opened with ``O_NOFOLLOW``), unless
    the file is not a plain file of its own: a hard link to another file, a FIFO, a device."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        raise OSError(errno.EPERM, "not a plain file of its own")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode(), 0)


def _holder(lock_path: Path) -> str:
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "unknown"
    try:
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def unusable(directory: Path, error: OSError) -> UnusableDirectory:
    """The one-line error for a checkpoint directory that cannot be written in, saying what to do."""
    where = f"the checkpoint directory {shown(directory)} (--checkpoint.dirpath)"
    lock = shown(directory / LOCK_NAME)
    if error.errno == errno.ELOOP:
        return UnusableDirectory(f"{lock} is a symbolic link: a run never writes through one. Remove it "
                                 f"(rm {lock}) or give this run another checkpoint directory")
    if error.errno == errno.EPERM and error.strerror == "not a plain file of its own":
        return UnusableDirectory(f"{lock} is not a plain file of its own (a hard link, a FIFO, a device): a run "
                                 f"never writes through one. Remove it (rm {lock}) or give this run another "
                                 "checkpoint directory")
    if error.errno == errno.EISDIR:
        return UnusableDirectory(f"{lock} is a directory: it must be the run's lock file. Remove it or give this "
                                 "run another checkpoint directory")
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return UnusableDirectory(f"{where} is a file, or lies below one: give a directory")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return UnusableDirectory(f"{where}: no space left on its disk. Free some space or give another directory")
    reason = error.strerror or str(error)
    return UnusableDirectory(f"{where} cannot be written in ({reason}): give a directory this run may write in")


def global_zero_by_environment() -> bool:
    """Whether this process is (or will be) global rank zero: the first process of the first node,
    as torchrun, SLURM, Lightning's own launcher and the README's multi-node commands set them."""
    return rank_zero_only.rank == 0 and all(os.environ.get(v, "0") == "0" for v in ("NODE_RANK", "GROUP_RANK"))


def checkpoint_dirs(trainer: L.Trainer) -> list[Path]:
    """The directories the run's checkpoint callbacks write in (those left to Lightning, in the log version
    of this run, excepted). An empty name is refused: it would mean the working directory, unlocked."""
    found = [cb.dirpath for cb in trainer.callbacks if isinstance(cb, (ModelCheckpoint, StopCheckpoint))]
    if "" in found:
        raise UsageError("a checkpoint directory is empty (--checkpoint.dirpath \"\" or a checkpoint callback's "
                         "dirpath in the config): give a directory, . for the working directory")
    return sorted({Path(os.path.abspath(d)) for d in found if d is not None})


def move_aside(directory: Path, pl_module: L.LightningModule) -> None:
    """Moves the ``*.ckpt`` files of ``directory`` into ``earlier-<time of the newest>/`` there. Nothing
    goes through a symbolic link: a ``*.ckpt`` link is moved as a link, and the new folder is made afresh
    (an ``earlier-*`` name that exists, a link included, is passed over) and renamed into by descriptor."""
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
    nofollow = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    source_fd, target_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY), os.open(target, nofollow)
    try:
        for p in old:
            os.rename(p.name, p.name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
    finally:
        os.close(source_fd)
        os.close(target_fd)
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
