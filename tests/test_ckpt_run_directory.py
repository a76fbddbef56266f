"""Two runs and one checkpoint directory: a lock refuses the second while the first trains, a new run
moves the earlier run's checkpoints aside (no last-v1.ckpt), and each run logs into a version of its own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from charrnn.callbacks.run_directory import DirectoryInUse, RunDirectory, claim_version
from tests.support.processes import finish
from tests.support.resume import fit_in, make_work, start, state, wait_for


def test_a_second_run_in_the_same_directory_is_refused_naming_the_first(tmp_path, capsys):
    go = tmp_path / "go"
    work = make_work(tmp_path / "work", every=5, extra_callbacks=wait_for(go))
    first = start(work, "--trainer.max_steps", "6")
    try:
        lock = work / "ckpt" / ".lock"
        deadline = time.monotonic() + 120
        while not (lock.is_file() and f"pid {first.pid}" in lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.1)
        versions = sorted(p.name for p in (work / "logs" / "lightning_logs").iterdir())
        with pytest.raises(SystemExit) as exit_:
            fit_in(work, "--trainer.max_steps", "3")
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
        assert f"ckpt is in use by another training run (pid {first.pid}, started " in err
        assert sorted(p.name for p in (work / "logs" / "lightning_logs").iterdir()) == versions  # no log version
    finally:
        go.touch()
    finish(first)
    names = sorted(p.name for p in (work / "ckpt").iterdir())
    assert names == [".lock", "last.ckpt", "step=5.ckpt"], names  # nothing moved, nothing added
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 6  # brought up to date as the run ended
    # the lock went with the first process: the same command now runs (and resumes it)
    cli = fit_in(work, "--ckpt_path", "last", "--trainer.max_steps", "7")
    assert cli.trainer.global_step == 7


def test_the_lock_is_refused_within_one_process_too(tmp_path):
    first, second = RunDirectory(), RunDirectory()
    first._lock(tmp_path)
    with pytest.raises(DirectoryInUse, match=r"in use by another training run \(pid \d+, started "):
        second._lock(tmp_path)
    first._unlock()
    second._lock(tmp_path)  # released
    second._unlock()


def test_a_new_run_moves_the_earlier_runs_checkpoints_aside(tmp_path):
    work = make_work(tmp_path / "work", every=5)
    fit_in(work, "--trainer.max_steps", "10")
    before = sorted(p.name for p in (work / "ckpt").glob("*.ckpt"))
    cli = fit_in(work, "--trainer.max_steps", "3", "--model.learning_rate", "0.01")  # no --ckpt_path: fresh
    assert cli.trainer.global_step == 3
    (earlier,) = (work / "ckpt").glob("earlier-*")
    assert sorted(p.name for p in earlier.glob("*.ckpt")) == before
    assert state(earlier / "last.ckpt")["global_step"] == 10
    assert sorted(p.name for p in (work / "ckpt").glob("*.ckpt")) == ["last.ckpt"]  # never last-v1.ckpt
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 3
    # `last` is the newest run's, with its own settings
    cli = fit_in(work, "--ckpt_path", "last", "--trainer.max_steps", "4", "--model.learning_rate", "0.01")
    assert cli.trainer.global_step == 4


def test_resuming_moves_nothing(tmp_path):
    work = make_work(tmp_path / "work", every=5)
    fit_in(work, "--trainer.max_steps", "5")
    fit_in(work, "--ckpt_path", "ckpt/step=5.ckpt", "--trainer.max_steps", "10")
    assert not list((work / "ckpt").glob("earlier-*"))
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 10


@pytest.mark.parametrize("kind", [TensorBoardLogger, CSVLogger])
def test_runs_starting_together_get_log_versions_of_their_own(tmp_path: Path, kind):
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    a, b = kind(tmp_path), kind(tmp_path)
    assert a.version == b.version == 1  # what each would pick by itself
    claim_version(a)
    claim_version(b)
    assert (a.version, b.version) == (1, 2) and (tmp_path / "lightning_logs" / "version_2").is_dir()


def test_last_after_a_move_says_where_the_earlier_checkpoints_are(tmp_path, capsys):
    work = make_work(tmp_path / "work")
    (work / "ckpt" / "earlier-20260101-000000").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_:
        fit_in(work, "--ckpt_path", "last")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no checkpoint to resume from in ckpt (a new run moved earlier checkpoints into " \
           "ckpt/earlier-20260101-000000: move them back to continue that run)" in err
