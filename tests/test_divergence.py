"""A run whose loss turns non-finite or explodes stops with one line, and its checkpoints keep the last good
state; pure float16 on a CPU is warned about at the start."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch

from charrnn.callbacks.divergence import loss_limit
from charrnn.cli import cli_main
from tests.support.paths import ROOT
from tests.support.texts import TINY_TEXT

DEBUG = str(ROOT / "configs" / "debug.yaml")


class Poison(L.Callback):
    """Scales the output layer's weights by ``scale`` before the step after ``at_step``: NaN, or a loss that
    explodes while staying finite."""

    def __init__(self, at_step: int, scale: str) -> None:  # text: JSON has no NaN
        self.at_step, self.scale = at_step, float(scale)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                pl_module.net.head.weight.mul_(self.scale)


def fit(tmp_path, monkeypatch, *flags: str):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    return cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                     "--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false", *flags])


@pytest.mark.parametrize("check_every", ["10", "1000"])  # caught by the training loss, or at the save
@pytest.mark.parametrize(("scale", "said"), [("nan", "not finite"), ("1e4", "(above ")])
def test_a_diverged_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys,
                                                                             scale, said, check_every):
    poison = {"class_path": "tests.test_divergence.Poison", "init_args": {"at_step": 15, "scale": scale}}
    with pytest.raises(SystemExit) as exit_:
        fit(tmp_path, monkeypatch, f"--trainer.callbacks+={json.dumps(poison)}",
            "--divergence.check_every_n_steps", check_every)
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: training diverged at step 20: "), errors
    assert said in errors[0] and "checkpoints/debug/last.ckpt (step 10)" in errors[0]
    ckpts = tmp_path / "checkpoints" / "debug"
    assert not list(ckpts.glob("*step=20*"))  # nothing written from the diverged weights
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10 and all(t.isfinite().all() for t in last["state_dict"].values())


def test_a_normal_run_checked_at_every_step_is_left_alone(tmp_path, monkeypatch):
    cli = fit(tmp_path, monkeypatch, "--divergence.check_every_n_steps", "1")
    assert cli.trainer.global_step == 30
    assert float(cli.trainer.callback_metrics["val/loss"]) < loss_limit(len(cli.model.vocab)) / 2


def test_the_bound_is_far_above_an_untrained_network():
    assert loss_limit(65) == pytest.approx(2 * math.log(65))
    assert loss_limit(2) == pytest.approx(math.log(2) + 3)


def test_pure_float16_on_a_cpu_is_warned_about(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match=r"--trainer.precision 16-true on a CPU: .* training tends to diverge"):
        fit(tmp_path, monkeypatch, "--trainer.precision", "16-true", "--trainer.fast_dev_run", "true")


def test_a_save_between_checks_refuses_diverged_weights(tmp_path, monkeypatch, capsys):
    poison = {"class_path": "tests.test_divergence.Poison", "init_args": {"at_step": 12, "scale": "nan"}}
    with pytest.raises(SystemExit):  # the loss is read only before a save here: at step 15, no validation
        fit(tmp_path, monkeypatch, f"--trainer.callbacks+={json.dumps(poison)}",
            "--divergence.check_every_n_steps", "1000", "--checkpoint.every_n_train_steps", "5")
    assert "error: training diverged at step 15: the mean training loss of the last 5 steps is nan" in \
        capsys.readouterr().err
    ckpts = tmp_path / "checkpoints" / "debug"
    assert sorted(p.name for p in ckpts.glob("step=*.ckpt")) == ["step=10.ckpt", "step=5.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 10
