"""Stopping a training run by a signal: Ctrl-C (SIGINT) saves interrupted.ckpt as SIGTERM does, a second
Ctrl-C stops at once, and the save is quiet (no "weights_only was not set" line from Lightning)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.resume import make_work, signal_at, state, train

DEFAULTED = "`weights_only` was not set"


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    work = make_work(tmp_path / "run", every=5, extra_callbacks=signal_at(7, signal.SIGINT))
    proc = train(work, check=False)
    assert proc.returncode != 0 and "Ctrl-C: stopping after this step" in proc.stderr, proc.stderr[-3000:]
    assert state(work / "ckpt" / "interrupted.ckpt")["global_step"] == 7  # last.ckpt holds step 5
    assert DEFAULTED not in proc.stderr + proc.stdout

    make_work(work, every=5)
    proc = train(work, "--ckpt_path", "last", "--trainer.max_steps", "9")
    assert "Resuming from ckpt/interrupted.ckpt (global step 7)" in proc.stderr
    assert DEFAULTED not in proc.stderr + proc.stdout


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path: Path) -> None:
    twice = signal_at(7, signal.SIGINT) * 2
    work = make_work(tmp_path / "run", every=5, extra_callbacks=twice)
    proc = train(work, check=False)
    assert proc.returncode == 1 and "KeyboardInterrupt" in proc.stderr, proc.stderr[-3000:]
    assert not (work / "ckpt" / "interrupted.ckpt").exists()
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 5


def test_sigterm_saves_without_lightnings_weights_only_default(tmp_path: Path) -> None:
    work = make_work(tmp_path / "run", every=5, extra_callbacks=signal_at(3, signal.SIGTERM))
    proc = train(work, check=False)
    assert proc.returncode == 128 + signal.SIGTERM and "Stopped by SIGTERM" in proc.stderr, proc.stderr[-3000:]
    assert state(work / "ckpt" / "interrupted.ckpt")["global_step"] == 3
    assert DEFAULTED not in proc.stderr + proc.stdout


def test_sigterm_before_the_trainer_listens_stops_with_a_line_not_a_silent_kill(tmp_path: Path) -> None:
    work = make_work(tmp_path / "run", every=5)
    train(work)  # last.ckpt at step 30
    make_work(work, every=5, extra_callbacks=signal_at(0, signal.SIGTERM, when="created"))
    proc = train(work, "--ckpt_path", "last", "--trainer.max_steps", "40", check=False)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == "Stopped by SIGTERM. Continue with the same command and --ckpt_path last"
    assert "Traceback" not in proc.stderr
    assert not (work / "ckpt" / "interrupted.ckpt").exists()
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 30


def test_sigterm_while_the_trainer_sets_up_stops_before_the_first_step(tmp_path: Path) -> None:
    work = make_work(tmp_path / "run", every=5, extra_callbacks=signal_at(0, signal.SIGTERM, when="setup"))
    proc = train(work, check=False)
    assert proc.returncode == 128 + signal.SIGTERM and "Stopped by SIGTERM" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (work / "ckpt").glob("*.ckpt")) == []
