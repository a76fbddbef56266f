"""Damaged, missing, foreign and stale checkpoints: an error naming the file, or for `--ckpt_path last`
a fallback to the previous good checkpoint that says so; never a silent fresh start."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest
import torch

from charrnn.ckpt.load import CheckpointError, read_checkpoint
from charrnn.net_spec import ARCHITECTURE_FIELDS
from tests.support.resume import fit_in, losses, make_work, state


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten steps with checkpoints every 5 steps and after the validation at step 10."""
    work = make_work(tmp_path_factory.mktemp("trained"), every=5)
    fit_in(work, "--trainer.max_steps", "10")
    return work


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run (file times kept, so `last` sees the same order)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == "not a checkpoint":
        torch.save([1, 2, 3], path)


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "garbage", "not a checkpoint"])
def test_a_damaged_checkpoint_is_named(run, how):
    path = run / "ckpt" / "step=5.ckpt"
    damage(path, how)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
        read_checkpoint(path)


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "garbage"])
def test_fit_refuses_a_damaged_ckpt_path_naming_it(run, how, capsys):
    damage(run / "ckpt" / "step=5.ckpt", how)
    with pytest.raises(SystemExit) as exit_:
        fit_in(run, "--ckpt_path", "ckpt/step=5.ckpt")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: --ckpt_path checkpoint ckpt/step=5.ckpt" in err and "Traceback" not in err


def test_last_falls_back_to_the_previous_good_checkpoint_and_says_so(run, capsys):
    damage(run / "ckpt" / "last.ckpt", "truncated")
    with pytest.warns(UserWarning, match=r"skipped checkpoint ckpt/last.ckpt is damaged.*Falling back to the "
                                         r"previous good checkpoint ckpt/step=10.ckpt"):
        cli = fit_in(run, "--ckpt_path", "last", "--trainer.max_steps", "12")
    assert cli.trainer.global_step == 12
    assert sorted(s for s in losses(run) if s >= 10) == [10, 11]  # resumed at step 10, not from scratch


def test_last_with_no_checkpoint_is_an_error(tmp_path, capsys):
    work = make_work(tmp_path / "fresh")
    with pytest.raises(SystemExit) as exit_:
        fit_in(work, "--ckpt_path", "last")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--ckpt_path last: there is no checkpoint to resume from in ckpt" in err
    assert "leave out --ckpt_path" in err and not (work / "ckpt").exists()


def test_last_with_only_damaged_checkpoints_is_an_error(run, capsys):
    for path in (run / "ckpt").glob("*.ckpt"):
        damage(path, "garbage")
    with pytest.raises(SystemExit) as exit_:
        fit_in(run, "--ckpt_path", "last")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err
    assert "checkpoint ckpt/last.ckpt " in err and "checkpoint ckpt/step=5.ckpt " in err


def test_last_of_another_model_is_refused(run, capsys):
    with pytest.raises(SystemExit) as exit_:
        fit_in(run, "--ckpt_path", "last", "--model.rnn_size", "24")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "ckpt/last.ckpt belongs to another model (rnn_size: 16 there, 24 here)" in err


def test_last_of_another_corpus_is_refused(run, capsys):
    text = (run / "corpus.txt").read_text()
    (run / "corpus.txt").write_text(text + "Zebra #42 @ quay\n")
    with pytest.raises(SystemExit) as exit_:
        fit_in(run, "--ckpt_path", "last")
    assert exit_.value.code == 2
    old, new = len(set(text)), len(set(text + "Zebra #42 @ quay"))
    assert f"vocabulary: {old} tokens there, {new} from the data here" in capsys.readouterr().err


def test_last_takes_the_newest_last_file(run):
    """ModelCheckpoint writes last-v1.ckpt when a new run meets an old last.ckpt: the newest wins."""
    shutil.copy(run / "ckpt" / "step=5.ckpt", run / "ckpt" / "last-v1.ckpt")
    cli = fit_in(run, "--ckpt_path", "last", "--trainer.max_steps", "7")
    assert cli.trainer.global_step == 7 and sorted(s for s in losses(run) if s >= 5) == [5, 6, 7, 8, 9]


def test_a_weights_only_checkpoint_cannot_resume(run, capsys):
    ckpt = state(run / "ckpt" / "step=5.ckpt")
    del ckpt["optimizer_states"], ckpt["loops"]
    torch.save(ckpt, run / "ckpt" / "weights.ckpt")
    with pytest.raises(SystemExit):
        fit_in(run, "--ckpt_path", "ckpt/weights.ckpt")
    assert "cannot resume training: it has no loops, optimizer_states" in capsys.readouterr().err


def test_a_checkpoint_written_before_the_architecture_was_saved_resumes_exactly(trained, run):
    """Checkpoints once held the architecture only among their hyperparameters, and an unread hidden_is_pair."""
    path = run / "ckpt" / "step=5.ckpt"
    ckpt = state(path)
    assert ckpt["architecture"] == {"vocab_size": len(ckpt["hyper_parameters"]["vocab"])} | {
        k: ckpt["hyper_parameters"][k] for k in ARCHITECTURE_FIELDS}
    assert "hidden_is_pair" not in ckpt["charrnn_resume"]
    del ckpt["architecture"]
    ckpt["charrnn_resume"]["hidden_is_pair"] = len(ckpt["charrnn_resume"]["hidden"]) == 2
    torch.save(ckpt, path)
    cli = fit_in(run, "--ckpt_path", "ckpt/step=5.ckpt", "--trainer.max_steps", "10")
    assert cli.trainer.global_step == 10
    resumed, original = losses(run), losses(trained)
    assert [resumed[s] for s in range(5, 10)] == [original[s] for s in range(5, 10)]


def test_rerunning_without_ckpt_path_starts_a_new_run_in_the_same_directory(run):
    """The earlier run's checkpoints are moved aside into earlier-*; the new run's are all that ckpt/ holds."""
    cli = fit_in(run, "--trainer.max_steps", "3")
    assert cli.trainer.global_step == 3
    newest = max((run / "logs" / "lightning_logs").iterdir(), key=lambda p: p.name)
    with open(newest / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row["train/loss"]]
    assert newest.name == "version_1" and steps == [0, 1, 2]
    (earlier,) = (run / "ckpt").glob("earlier-*")
    assert sorted(p.name for p in (run / "ckpt").iterdir() if p.is_file()) == [".lock", "last.ckpt"]
    assert state(run / "ckpt" / "last.ckpt")["global_step"] == 3
    assert sorted(p.name for p in earlier.iterdir()) == ["last.ckpt", "step=10.ckpt", "step=5.ckpt", "val-step=10.ckpt"]
