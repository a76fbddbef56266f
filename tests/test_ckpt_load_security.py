"""A checkpoint holding a pickle payload is refused everywhere one is read, and the payload never
runs, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in the environment. The payload would create a
sentinel file; a control shows that it really does when loaded unsafely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from charrnn.ckpt.load import CheckpointError, read_model
from charrnn.ckpt.write import SafeCheckpointIO
from charrnn.export import export
from tests.support.paths import ROOT
from tests.support.processes import run
from tests.support.resume import fit_in, make_work

UNSAFE_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # what a user could set: our loading must ignore it


class Payload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # noqa: ANN204 — on unpickling this calls open(sentinel, "w")
        return (open, (str(self.sentinel), "w"))


def write_malicious(path: Path, sentinel: Path) -> Path:
    """A file shaped like a training checkpoint, with the payload among its loop states."""
    torch.save({"state_dict": {}, "hyper_parameters": {"vocab": list("ab")}, "global_step": 5,
                "optimizer_states": [], "loops": Payload(sentinel)}, path)
    return path


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    sentinel = tmp_path / "payload-ran"
    return write_malicious(tmp_path / "evil.ckpt", sentinel), sentinel


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_work(tmp_path_factory.mktemp("trained"), every=5)
    fit_in(work, "--trainer.max_steps", "5")
    return work


def test_control_the_payload_runs_when_loaded_unsafely(malicious):
    path, sentinel = malicious
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    run(["-c", code], ROOT, extra_env=UNSAFE_ENV)
    assert sentinel.exists()


def test_sample_py_refuses_it(malicious):
    path, sentinel = malicious
    proc = run([str(ROOT / "sample.py"), "--ckpt", str(path)], ROOT, extra_env=UNSAFE_ENV)
    assert proc.returncode == 2 and f"checkpoint {path} was refused" in proc.stderr
    assert not sentinel.exists()


def test_resuming_from_it_is_refused(malicious, tmp_path):
    path, sentinel = malicious
    work = make_work(tmp_path / "run")
    proc = run([str(ROOT / "train.py"), "fit", "--config", "overlay.yaml", "--data.input_txt", "corpus.txt",
                "--ckpt_path", str(path)], work, extra_env=UNSAFE_ENV)
    assert proc.returncode == 2 and f"--ckpt_path checkpoint {path} was refused" in proc.stderr
    assert not sentinel.exists() and "Traceback" not in proc.stderr


def test_last_skips_a_malicious_last_ckpt(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    sentinel = tmp_path / "payload-ran"
    write_malicious(run / "ckpt" / "last.ckpt", sentinel)
    with pytest.warns(UserWarning, match="skipped checkpoint ckpt/last.ckpt was refused"):
        cli = fit_in(run, "--ckpt_path", "last", "--trainer.max_steps", "6")
    assert cli.trainer.global_step == 6 and not sentinel.exists()


def test_init_from_refuses_it(malicious, tmp_path, capsys):
    path, sentinel = malicious
    with pytest.raises(SystemExit) as exit_:
        fit_in(make_work(tmp_path / "run"), "--model.init_from", str(path))
    assert exit_.value.code == 2 and "--model.init_from checkpoint" in capsys.readouterr().err
    assert not sentinel.exists()


def test_every_reader_refuses_it(malicious, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, sentinel = malicious
    for read in (read_model, SafeCheckpointIO().load_checkpoint, lambda p: export(p, tmp_path / "out")):
        with pytest.raises(CheckpointError, match="was refused"):
            read(path)
    assert not sentinel.exists()


def test_control_lightnings_default_reader_obeys_the_environment(malicious, monkeypatch):
    """Why SafeCheckpointIO passes weights_only=True itself: Lightning's reader leaves it to the default."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, sentinel = malicious
    TorchCheckpointIO().load_checkpoint(path)
    assert sentinel.exists()
