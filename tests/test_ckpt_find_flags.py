"""Flags that contradict ``--ckpt_path``: refused, or taking effect, or named as unused; never dropped."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from charrnn.cli import cli_main
from tests.support.resume import fit_in, make_work


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_work(tmp_path_factory.mktemp("trained"), every=5)
    fit_in(work, "--trainer.max_steps", "5")
    return work


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def refused(capsys: pytest.CaptureFixture, work: Path, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        fit_in(work, *args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("ckpt", ["ckpt/step=5.ckpt", "last"])
def test_another_architecture_is_refused_from_a_file_as_from_last(run, capsys, ckpt):
    err = refused(capsys, run, "--ckpt_path", ckpt, "--model.rnn_size", "24", "--model.model_type", "gru")
    assert "belongs to another model (model_type: 'lstm' there, 'gru' here; rnn_size: 16 there, 24 here)" in err


@pytest.mark.parametrize("ckpt", ["ckpt/step=5.ckpt", "last"])
@pytest.mark.parametrize("flag, value, saved", [("learning_rate", "0.01", "0.002"), ("lr_schedule", "cosine", "'step'"),
                                                ("weight_decay", "0.1", "0.0"), ("warmup_steps", "10", "0"),
                                                ("lr_decay_factor", "0.5", "0.7")])
def test_an_optimizer_setting_that_cannot_take_effect_is_refused(run, capsys, ckpt, flag, value, saved):
    err = refused(capsys, run, "--ckpt_path", ckpt, f"--model.{flag}", value, "--trainer.max_steps", "7")
    assert f"--model.{flag} " in err and f"(checkpoint: {saved})" in err and "--model.init_from" in err
    assert not (run / "ckpt" / "step=7.ckpt").exists()


def test_the_same_settings_resume_from_a_file(run):
    cli = fit_in(run, "--ckpt_path", "ckpt/step=5.ckpt", "--trainer.max_steps", "7", "--model.learning_rate", "0.002")
    assert cli.trainer.global_step == 7


@pytest.mark.parametrize("ckpt", ["ckpt/step=5.ckpt", "last"])
def test_a_per_step_setting_takes_effect_and_says_so(run, caplog, ckpt):
    with caplog.at_level(logging.INFO):
        cli = fit_in(run, "--ckpt_path", ckpt, "--model.state_reset_prob", "0.5", "--trainer.max_steps", "7")
    assert cli.model.hparams.state_reset_prob == 0.5 and cli.trainer.global_step == 7
    assert "taking effect from the resumed step on: --model.state_reset_prob 0.5 (checkpoint: 0.2)" in caplog.text


def evaluate(work: Path, command: str, *args: str):  # noqa: ANN201 (a CharRNNCLI)
    old = os.getcwd()
    os.chdir(work)
    try:
        return cli_main([command, "--data.input_txt", "corpus.txt", "--data.url", "null", "--data.batch_size", "4",
                         "--data.seq_length", "16", "--data.val_frac", "0.2", "--trainer.logger", "false",
                         "--ckpt_path", "ckpt/step=5.ckpt", *args])
    finally:
        os.chdir(old)


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluation_takes_what_no_flag_gives_from_the_checkpoint(run, command):
    cli = evaluate(run, command)  # no config: the model's defaults (2x128) are not the checkpoint's
    hp = cli.model.hparams
    assert (hp.rnn_size, hp.wordvec_size, hp.dropout, hp.lr_decay_factor) == (16, 8, 0.2, 0.7)


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_evaluation_refuses_another_architecture(run, capsys, command):
    with pytest.raises(SystemExit) as exit_:
        evaluate(run, command, "--model.num_layers", "3")
    assert exit_.value.code == 2
    assert "belongs to another model (num_layers: 2 there, 3 here)" in capsys.readouterr().err


def test_evaluation_names_training_settings_it_does_not_use(run, caplog):
    with caplog.at_level(logging.INFO):
        cli = evaluate(run, "validate", "--model.learning_rate", "0.5")
    assert cli.model.hparams.learning_rate == 0.5  # kept as given, and said to be unused
    said = "validate does not train, so these are not used: --model.learning_rate 0.5 (checkpoint: 0.002)"
    assert said in caplog.text


def test_init_from_beside_a_resume_is_refused(run, capsys):
    err = refused(capsys, run, "--ckpt_path", "ckpt/step=5.ckpt", "--model.init_from", "ckpt/step=5.ckpt")
    assert "--model.init_from 'ckpt/step=5.ckpt' (checkpoint: None): a resumed run takes its weights" in err
