"""The best checkpoints across resumes (top-k, the best path, the "Best checkpoint" line), and checkpoint
groups that never delete each other's files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

from tests.support.paths import ROOT
from tests.support.processes import run, run_ok
from tests.support.texts import TINY_TEXT

DEBUG = str(ROOT / "configs" / "debug.yaml")


def fit(work: Path, *flags: str) -> subprocess.CompletedProcess:
    return run_ok([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--data.input_txt", "tiny.txt",
                   "--data.url", "null", "--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false",
                   *flags], work)


def best_state(ckpt: Path) -> dict:
    states = torch.load(ckpt, weights_only=True)["callbacks"]
    return next(v for k, v in states.items() if "val/loss" in k)


def test_top_k_and_the_best_survive_resumes(tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    ckpts = tmp_path / "checkpoints" / "debug"
    for flags in ((), ("--trainer.max_steps", "40", "--ckpt_path", "last"),
                  ("--trainer.max_steps", "45", "--ckpt_path", "last")):  # the README's resume, then one more
        out = fit(tmp_path, *flags).stdout
        best = {p.name: float(re.search(r"val_loss=([\d.]+)\.ckpt", p.name)[1]) for p in ckpts.glob("best-*.ckpt")}
        assert len(best) == 2, (flags, sorted(best))  # save_top_k: 2
        printed = re.search(r"Best checkpoint: (\S+)", out)[1]
        assert Path(printed).name == min(best, key=best.get), (flags, printed, best)
        state = best_state(ckpts / "last.ckpt")  # what the next resume starts from
        assert {Path(p).name for p in state["best_k_models"]} == set(best), flags
        assert Path(state["best_model_path"]).name == Path(printed).name
    # last.ckpt is now written after the validation of its step: the resumes are still exact.
    whole = tmp_path / "uninterrupted"
    whole.mkdir()
    (whole / "tiny.txt").write_text(TINY_TEXT)
    fit(whole, "--trainer.max_steps", "45")
    resumed, uninterrupted = (torch.load(d / "checkpoints" / "debug" / "last.ckpt", weights_only=True)["state_dict"]
                              for d in (tmp_path, whole))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


# The keys a checkpoint written while charrnn.callbacks.UpToDateCheckpoint was called ModelCheckpoint holds
# the two groups' states under (configs/debug.yaml's settings).
OLD_KEYS = {
    None: "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 10, 'every_n_epochs': 0, "
          "'train_time_interval': None}",
    "val/loss": "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min', 'every_n_train_steps': 0, "
                "'every_n_epochs': 1, 'train_time_interval': None}",
}


def test_a_checkpoint_from_before_the_rename_resumes_its_best_state(tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    fit(tmp_path)
    last = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["callbacks"] = {OLD_KEYS[v["monitor"]]: v for v in ckpt["callbacks"].values() if "best_k_models" in v}
    assert len(ckpt["callbacks"]) == 2
    torch.save(ckpt, last)
    before = {Path(p).name for p in ckpt["callbacks"][OLD_KEYS["val/loss"]]["best_k_models"]}
    assert len(before) == 2

    proc = fit(tmp_path, "--trainer.max_steps", "40", "--ckpt_path", "last")
    assert "Please add the following callbacks" not in proc.stderr  # every saved state found its callback
    ckpts = tmp_path / "checkpoints" / "debug"
    best = {p.name for p in ckpts.glob("best-*.ckpt")}
    assert len(best) == 2, sorted(best)  # the restored top 2 competed with step 40's: none is left behind
    assert {Path(p).name for p in best_state(ckpts / "last.ckpt")["best_k_models"]} == best
    assert best - {n for n in best if n.startswith("best-step=40-")} <= before


def test_periodic_checkpoints_hold_the_validation_of_their_own_step(tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    fit(tmp_path, "--trainer.max_steps", "20")
    ckpts = tmp_path / "checkpoints" / "debug"
    best = {p.name for p in ckpts.glob("best-*.ckpt")}
    assert any(n.startswith("best-step=20-") for n in best)
    assert {Path(p).name for p in best_state(ckpts / "step=20.ckpt")["best_k_models"]} == best


@pytest.mark.parametrize("flags", [
    ("--best_checkpoints.filename", "step={step}"),
    ("--best_checkpoints.filename", "{step}", "--best_checkpoints.auto_insert_metric_name", "true"),  # also step=N
    ("--checkpoint.filename", "last"),  # its own last.ckpt
    ("--best_checkpoints.filename", "interrupted"),  # StopCheckpoint's
])
def test_groups_whose_files_could_collide_are_refused(tmp_path, flags):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    proc = run([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url",
                "null", *flags], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "two checkpoint settings would both write" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "checkpoints" / "debug").glob("*.ckpt"))  # refused before any step
