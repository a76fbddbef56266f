"""Crash-safe checkpoint files: a kill during a save leaves the previous file whole, and the CLI's
Trainer saves that way whatever the YAML says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from charrnn.ckpt.write import SafeCheckpointIO
from charrnn.cli import CharRNNCLI
from charrnn.data import CharDataModule
from charrnn.model import CharRNN
from tests.support.paths import DEBUG, ROOT
from tests.support.resume import make_work

KILLED_SAVE = """
import os, signal, sys, torch
from charrnn.ckpt.write import SafeCheckpointIO

io, target = SafeCheckpointIO(), sys.argv[1]
io.save_checkpoint({"weights": torch.ones(1000)}, target)

def dies_halfway(obj, f):  # the next save is killed after writing part of the file
    f.write(b"PK\\x03\\x04" + b"x" * 5000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dies_halfway
io.save_checkpoint({"weights": torch.zeros(1000)}, target)
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "ckpt" / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target)], cwd=ROOT, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.ones(1000))
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert leftovers == [f".last.ckpt.tmp-{leftovers[0].rpartition('-')[2]}"]  # hidden, never a *.ckpt
    SafeCheckpointIO().save_checkpoint({"weights": torch.full((3,), 2.0)}, target)
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # the dead writer's file is cleaned up


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    target = tmp_path / "last.ckpt"
    other = tmp_path / f".last.ckpt.tmp-{os.getppid()}"  # the parent process is alive
    other.write_bytes(b"being written")
    SafeCheckpointIO().save_checkpoint({"a": torch.ones(2)}, target)
    assert other.exists() and torch.load(target, weights_only=True)["a"].sum() == 2


def test_the_cli_trainer_saves_through_safe_checkpoint_io(tmp_path, monkeypatch):
    work = make_work(tmp_path)
    monkeypatch.chdir(work)
    cli = CharRNNCLI(CharRNN, CharDataModule, run=False,
                     args=["--config", DEBUG, "--config", "overlay.yaml", "--data.input_txt", "corpus.txt"])
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    path = Path(work / "manual.ckpt")
    cli.trainer.strategy.connect(cli.model)
    cli.trainer.save_checkpoint(path)  # outside fit: no loop state, but a valid file
    assert torch.load(path, weights_only=True)["hyper_parameters"]["rnn_size"] == 16


def test_a_full_disk_is_one_line_leaves_nothing_partial_and_last_resumes_the_newest_whole(tmp_path):
    """The disk fills up at step 10 between step=10.ckpt and last.ckpt (still at step 5). The step save waits
    for the validation of its step, so val-step=10.ckpt is written before both."""
    from tests.support.resume import disk_full_at, state, train

    work = make_work(tmp_path / "full", every=5, extra_callbacks=disk_full_at(10))
    done = train(work, "--trainer.max_steps", "20", check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: no space left writing {work / 'ckpt' / 'last.ckpt'}; nothing partial")
    assert "--ckpt_path last" in last_line
    left = sorted(p.name for p in (work / "ckpt").iterdir() if p.name != ".lock")  # the run lock (RunDirectory)
    assert left == ["last.ckpt", "step=10.ckpt", "step=5.ckpt", "val-step=10.ckpt"]  # no partial .last.ckpt.tmp-PID
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 5
    assert state(work / "ckpt" / "step=10.ckpt")["global_step"] == 10

    make_work(work, every=5)  # space freed: the same run without the full disk
    resumed = train(work, "--ckpt_path", "last", "--trainer.max_steps", "12")
    assert "is older than ckpt/step=10.ckpt (step 10)" in resumed.stderr
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 12
    newest = max((work / "logs" / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    steps = [int(line.split(",")[1]) for line in (newest / "metrics.csv").read_text().splitlines()[1:]
             if line.split(",")[1].isdigit()]
    assert min(steps) == 10  # resumed at step 10, not 5
