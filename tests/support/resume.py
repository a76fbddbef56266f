"""For the resume and crash tests: a small corpus, a fast overlay on configs/debug.yaml, callbacks that
stop or hinder a run at a known step, `python train.py fit` in a fresh process or in this one, and what
its logs and checkpoints hold."""

from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import torch

from tests.support import processes
from tests.support.paths import DEBUG, ROOT

# Stacked on configs/debug.yaml: a 2-layer model with dropout and state resets (so the RNG matters),
# a learning rate that steps every epoch (so the schedule matters), losses in a CSV file, and the
# checkpoint groups every shipped config uses (charrnn.callbacks.UpToDateCheckpoint, StopCheckpoint beside
# it): step=N.ckpt every EVERY steps with last.ckpt, and val-step=N.ckpt after every validation. One
# epoch is 17 batches of 4 x 16.
OVERLAY = """\
seed_everything: 7
trainer:
  max_steps: 30
  val_check_interval: 10
  limit_val_batches: 3
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args:
      save_dir: logs
  callbacks:{callbacks}
checkpoint:
  dirpath: ckpt
  every_n_train_steps: {every}
best_checkpoints:
  filename: "val-step={{step}}"
  save_top_k: -1
model:
  rnn_size: 16
  wordvec_size: 8
  num_layers: 2
  dropout: 0.2
  state_reset_prob: 0.2
  lr_schedule: step
  lr_decay_every: 1
  lr_decay_factor: 0.7
data:
  batch_size: 4
  seq_length: 16
  val_frac: 0.2
  test_frac: 0.0
"""
STEPS_PER_EPOCH = 17


def corpus_text(n_words: int = 225, seed: int = 0) -> str:
    """Word salad that never repeats itself, so every batch differs from every other."""
    rng = random.Random(seed)
    words = ("the king queen speak hear lord good night day love death blood crown sword answer "
             "gentle sweet heaven father mother brother tongue honour").split()
    lines = []
    while sum(len(line.split()) for line in lines) < n_words:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
        lines.append(line.capitalize() + rng.choice(".,;!?"))
    return "\n".join(lines) + "\n"


class SignalAt(L.Callback):
    """Sends ``signum`` to its own process at a known moment: after optimizer step ``step``; or, with ``when``
    "created", as the CLI builds the callbacks (before the Trainer listens for signals); or "setup", as the
    Trainer sets up (it listens; training has not begun)."""

    def __init__(self, step: int = 0, signum: int = signal.SIGTERM, when: str = "step") -> None:
        self.step, self.signum, self.when = step, signum, when
        if when == "created":
            os.kill(os.getpid(), signum)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.when == "setup":
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.when == "step" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def signal_at(step: int, signum: int, when: str = "step") -> str:
    """An overlay callback entry for SignalAt."""
    return (f"    - class_path: tests.support.resume.SignalAt\n"
            f"      init_args:\n        step: {step}\n        signum: {int(signum)}\n        when: {when}\n")


class WaitFor(L.Callback):
    """After optimizer step ``step``, waits (up to a minute) until the file ``path`` exists."""

    def __init__(self, path: str, step: int = 2) -> None:
        self.path, self.step = Path(path), step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        deadline = time.monotonic() + 60
        while trainer.global_step == self.step and not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def wait_for(path: Path, step: int = 2) -> str:
    """An overlay callback entry for WaitFor."""
    return (f"    - class_path: tests.support.resume.WaitFor\n"
            f"      init_args:\n        path: {path}\n        step: {step}\n")


class DiskFullAt(L.Callback):
    """From optimizer step ``step`` on, every write of ``name`` fails as on a full disk (ENOSPC) after
    part of the file is written: ``charrnn.atomic``'s ``open`` is replaced in this process."""

    def __init__(self, step: int, name: str = "last.ckpt") -> None:
        self.step, self.name = step, name

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from charrnn import atomic

        def open_(file: str | os.PathLike, mode: str = "r", *rest: object, **kwargs: object):  # noqa: ANN202
            f = open(file, mode, *rest, **kwargs)
            full = trainer.global_step >= self.step and Path(file).name.startswith(f".{self.name}.tmp")
            return _FillingFile(f) if full else f

        atomic.open = open_  # the module's global shadows the builtin


class _FillingFile:
    def __init__(self, file: object) -> None:
        self.file, self.room = file, 1000

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def disk_full_at(step: int, name: str = "last.ckpt") -> str:
    """An overlay callback entry for DiskFullAt."""
    return (f"    - class_path: tests.support.resume.DiskFullAt\n"
            f"      init_args:\n        step: {step}\n        name: {name}\n")


def make_work(path: Path, every: int = 1, extra_callbacks: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "corpus.txt").write_text(corpus_text())
    callbacks = f"\n{extra_callbacks}" if extra_callbacks else " []"
    (path / "overlay.yaml").write_text(OVERLAY.format(every=every, callbacks=callbacks))
    return path


def start(work: Path, *args: str) -> subprocess.Popen:
    """Starts ``python train.py fit`` with the debug config and the overlay in ``work`` (a fresh process)."""
    return processes.start([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--config", "overlay.yaml",
                            "--data.input_txt", "corpus.txt", "--data.url", "null", *args], work)


def train(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``start``, then waits for its end (with ``check``: a failure unless it exited 0)."""
    return processes.finish(start(work, *args), check)


def losses(work: Path) -> dict[int, str]:
    """Training loss by step (as written, so comparisons are exact) over all runs logged in ``work``."""
    out: dict[int, str] = {}
    for path in sorted((work / "logs").glob("lightning_logs/version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    out[int(row["step"])] = row["train/loss"]
    return out


def val_losses(work: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for path in sorted((work / "logs").glob("lightning_logs/version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val/loss"):
                    out[int(row["step"])] = row["val/loss"]
    return out


def state(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True, map_location="cpu")


def same_tensors(a: object, b: object) -> bool:
    """Bit-identical nested structures of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same_tensors, a, b))
    return a == b


def fit_in(work: Path, *args: str):  # noqa: ANN201 (a CharRNNCLI; imported late, as subprocess tests need none)
    """``train.py fit`` with the debug config and the overlay, in this process, in directory ``work``."""
    from charrnn.cli import cli_main

    old = os.getcwd()
    os.chdir(work)
    try:
        return cli_main(["fit", "--config", DEBUG, "--config", "overlay.yaml", "--data.input_txt", "corpus.txt",
                         "--data.url", "null", *args])
    finally:
        os.chdir(old)
