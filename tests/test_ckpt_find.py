"""``--ckpt_path last`` and the model check (charrnn/ckpt/find.py) on checkpoint files written here, with
their modification times set: which file is taken, what is skipped, and what is refused."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from charrnn.ckpt import find
from charrnn.ckpt.load import read_checkpoint
from charrnn.model import CharRNN

ARCH = {"wordvec_size": 4, "rnn_size": 4, "num_layers": 1}


def model(vocab: str = "ab", **arch: int) -> CharRNN:
    return CharRNN(vocab=list(vocab), **{**ARCH, **arch})


def write(path: Path, step: int, mtime: int, net: CharRNN | None = None) -> Path:
    """A training checkpoint of ``net`` at global step ``step``, last modified at ``mtime``."""
    net = net or model()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams), "loops": {},
                "optimizer_states": [], "global_step": step}, path)
    os.utime(path, (mtime, mtime))
    return path


def damaged(path: Path, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def trainer(tmp_path, monkeypatch) -> SimpleNamespace:
    """What resolve_last reads of a Trainer: its callbacks, here one ModelCheckpoint writing into ckpt/."""
    monkeypatch.chdir(tmp_path)
    return SimpleNamespace(callbacks=[ModelCheckpoint(dirpath="ckpt")])


def resolved(trainer: SimpleNamespace) -> tuple[str, int]:
    path, ckpt = find.resolve_last(trainer, fitting=True)
    return str(path), ckpt["global_step"]


def test_last_is_the_newest_last_file_even_beside_newer_saves_of_no_later_step(trainer):
    write(Path("ckpt/step=10.ckpt"), 10, 1000)
    write(Path("ckpt/last.ckpt"), 10, 1001)
    write(Path("ckpt/val-step=5.ckpt"), 5, 1002)  # newer, of an earlier step
    assert resolved(trainer) == ("ckpt/last.ckpt", 10)


def test_a_save_newer_than_last_and_of_a_later_step_wins_with_a_warning(trainer):
    write(Path("ckpt/last.ckpt"), 10, 1000)
    write(Path("ckpt/step=15.ckpt"), 15, 1001)
    with pytest.warns(UserWarning, match=r"ckpt/last.ckpt \(step 10\) is older than ckpt/step=15.ckpt \(step 15\): "
                                         r"a run ended before it wrote last.ckpt again, or that save failed"):
        assert resolved(trainer) == ("ckpt/step=15.ckpt", 15)


def test_newer_than_last_passes_over_a_damaged_newer_file(trainer):
    write(Path("ckpt/last.ckpt"), 10, 1000)
    damaged(Path("ckpt/step=15.ckpt"), 1001)
    assert resolved(trainer) == ("ckpt/last.ckpt", 10)


def test_a_damaged_last_falls_back_to_the_newest_good_checkpoint(trainer):
    write(Path("ckpt/step=5.ckpt"), 5, 1000)
    write(Path("ckpt/step=10.ckpt"), 10, 1001)
    damaged(Path("ckpt/last.ckpt"), 1002)
    with pytest.warns(UserWarning, match=r"^--ckpt_path last: skipped .*ckpt/last.ckpt.*\. Falling back to the "
                                         r"previous good checkpoint ckpt/step=10.ckpt$"):
        assert resolved(trainer) == ("ckpt/step=10.ckpt", 10)


def test_a_weights_only_file_cannot_resume_training_and_is_passed_over(trainer):
    write(Path("ckpt/step=5.ckpt"), 5, 1000)
    net = model()
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams)}, "ckpt/last.ckpt")
    os.utime("ckpt/last.ckpt", (1001, 1001))
    with pytest.warns(UserWarning, match=r"cannot resume training: it has no loops, optimizer_states, global_step"):
        assert resolved(trainer) == ("ckpt/step=5.ckpt", 5)


def test_no_checkpoint_at_all_is_an_error_not_a_fresh_start(trainer):
    Path("ckpt").mkdir()
    with pytest.raises(find.ResumeError, match=r"^--ckpt_path last: there is no checkpoint to resume from in ckpt\. "
                                               r"To start a new run, leave out --ckpt_path$"):
        find.resolve_last(trainer, fitting=True)


def test_only_damaged_checkpoints_is_an_error_naming_them(trainer):
    damaged(Path("ckpt/last.ckpt"), 1000)
    with pytest.raises(find.ResumeError, match=r"^--ckpt_path last: no usable checkpoint; .*ckpt/last.ckpt.*\. "
                                               r"Remove or repair them"):
        find.resolve_last(trainer, fitting=True)


def test_a_checkpoint_of_another_vocabulary_is_refused(tmp_path):
    path = write(tmp_path / "a.ckpt", 3, 1000, model("ab"))
    ckpt = read_checkpoint(path, resuming=True)
    with pytest.raises(find.ResumeError, match=r"belongs to another model \(vocabulary: 2 tokens there, 3 from the "
                                               r"data here\)"):
        find.check_matches(path, ckpt, model("abc"))


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = write(tmp_path / "a.ckpt", 3, 1000, model(rnn_size=4))
    ckpt = read_checkpoint(path, resuming=True)
    with pytest.raises(find.ResumeError, match=r"belongs to another model \(rnn_size: 4 there, 8 here\)"):
        find.check_matches(path, ckpt, model(rnn_size=8))


def test_the_same_model_passes(tmp_path):
    path = write(tmp_path / "a.ckpt", 3, 1000)
    find.check_matches(path, read_checkpoint(path, resuming=True), model())
