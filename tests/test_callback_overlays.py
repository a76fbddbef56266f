"""The callback overlays of the top-level callbacks/ folder: each stacks with a shipped config through the
real command line and trains with it on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping

from charrnn.ckpt.load import read_model
from charrnn.cli import cli_main
from tests.support.paths import DEBUG, ROOT
from tests.support.processes import run_ok
from tests.support.texts import TINY_TEXT

OVERLAYS = sorted((ROOT / "callbacks").glob("*.yaml"))


def class_paths(callbacks: list[dict]) -> list[str]:
    return [cb["class_path"] for cb in callbacks]


def test_the_folder_holds_overlays_and_configs_hold_none():
    assert {p.name for p in OVERLAYS} >= {"early-stopping.yaml", "device-stats.yaml", "ema.yaml"}
    assert not list((ROOT / "callbacks").glob("*.py"))  # settings only: the callback code is charrnn/callbacks/
    for config in (ROOT / "configs").glob("*.yaml"):
        assert "callbacks+" not in yaml.safe_load(config.read_text()).get("trainer", {}), config.name


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_an_overlay_adds_its_callbacks_to_the_configs(overlay: Path, tmp_path):
    added = class_paths(yaml.safe_load(overlay.read_text())["trainer"]["callbacks+"])
    config = ROOT / "configs" / "shakespeare.yaml"
    kept = class_paths(yaml.safe_load(config.read_text())["trainer"]["callbacks"])
    printed = run_ok([str(ROOT / "train.py"), "fit", "--config", str(config), "--config", str(overlay),
                      "--print_config"], tmp_path).stdout
    assert class_paths(yaml.safe_load(printed)["trainer"]["callbacks"]) == kept + added


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_an_overlay_trains_a_few_steps_on_a_cpu(overlay: Path, tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    run_ok([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--config", str(overlay), "--data.input_txt", "tiny.txt",
            "--data.url", "null", "--trainer.max_steps", "10", "--samples.every_n_steps", "0",
            "--trainer.enable_progress_bar", "false"], tmp_path)
    net = read_model(tmp_path / "checkpoints" / "debug" / "last.ckpt").net
    assert net.rnn.hidden_size == 32


def test_early_stopping_stops_a_run_that_no_longer_improves(tmp_path, monkeypatch):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", DEBUG, "--config", str(ROOT / "callbacks" / "early-stopping.yaml"),
                    "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "400", "--model.learning_rate", "0"])  # lr 0: val loss never improves
    stoppers = [cb for cb in cli.trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert len(stoppers) == 1 and stoppers[0].monitor == "val/loss"
    assert cli.trainer.should_stop
    assert cli.trainer.global_step == 50  # first validation + 4 without improvement, every 10 steps


def test_ema_saves_the_average_as_the_weights_and_resumes(tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    flags = ["--config", DEBUG, "--config", str(ROOT / "callbacks" / "ema.yaml"), "--data.input_txt", "tiny.txt",
             "--data.url", "null", "--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false"]
    run_ok([str(ROOT / "train.py"), "fit", *flags, "--trainer.max_steps", "10"], tmp_path)
    last = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    trained = ckpt["current_model_state"]
    assert set(trained) == set(ckpt["state_dict"])
    assert not all(torch.equal(trained[k], ckpt["state_dict"][k]) for k in trained)  # the average is another
    run_ok([str(ROOT / "train.py"), "fit", *flags, "--trainer.max_steps", "20", "--ckpt_path", "last"], tmp_path)
    assert torch.load(last, weights_only=True)["global_step"] == 20
