"""Export to safetensors + JSON: the same network without pickle, read by read_model and sample.py."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from charrnn.ckpt.load import CheckpointError, read_model
from charrnn.export import main
from charrnn.preprocess import PreprocessSettings, preprocess
from charrnn.vocab import Vocab
from tests.support.paths import ROOT
from tests.support.resume import fit_in, make_work


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_work(tmp_path_factory.mktemp("trained"), every=5)
    fit_in(work, "--trainer.max_steps", "5")
    return work / "ckpt" / "last.ckpt"


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["--ckpt", str(ckpt), "--out", str(out)]) == 0
    return out


def outputs(net: torch.nn.Module) -> torch.Tensor:
    x = torch.arange(20).remainder(10).reshape(2, 10)
    return net(x)[0]


def test_export_writes_weights_and_a_torch_rnn_vocabulary(exported, ckpt):
    assert sorted(p.name for p in exported.iterdir()) == ["model.safetensors", "vocab.json"]
    vocab = torch.load(ckpt, weights_only=True)["hyper_parameters"]["vocab"]
    assert Vocab.load(exported / "vocab.json").tokens == vocab
    with safe_open(exported / "model.safetensors", framework="pt") as f:
        meta = f.metadata()
        assert json.loads(meta["architecture"]) == asdict(read_model(ckpt).architecture)
        assert json.loads(meta["architecture"])["rnn_size"] == 16 and json.loads(meta["vocab"]) == vocab
        assert all(not k.startswith("net.") for k in f.keys())


@pytest.mark.parametrize("form", ["directory", "file"])
def test_read_model_reads_the_export_without_torch_load(exported, ckpt, form, monkeypatch):
    expected = read_model(ckpt)
    expected_net, expected_vocab = expected.net, expected.vocab

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load used for an export")

    monkeypatch.setattr(torch, "load", no_pickle)
    model = read_model(exported if form == "directory" else exported / "model.safetensors")
    net, vocab = model.net, model.vocab
    assert model.architecture == expected.architecture
    assert vocab == expected_vocab and not net.training
    assert torch.equal(outputs(net), outputs(expected_net))


@pytest.mark.parametrize("source", ["checkpoint", "t7"])
def test_export_reads_its_source_once(ckpt, torch_rnn_t7, tmp_path, monkeypatch, capsys, source):
    """One reading gives the weights, the architecture, the vocabulary and, for a .t7, what its training recorded."""
    from charrnn.ckpt import torch_rnn

    reads: list[Path] = []
    reader = (torch, "load") if source == "checkpoint" else (torch_rnn, "parse")
    real = getattr(*reader)
    monkeypatch.setattr(*reader, lambda path, *a, **k: reads.append(Path(path)) or real(path, *a, **k))
    path = ckpt if source == "checkpoint" else torch_rnn_t7
    assert main(["--ckpt", str(path), "--out", str(tmp_path / "out")]) == 0
    assert reads == [path]
    assert ("converted" in capsys.readouterr().out) == (source == "t7")


def test_sample_py_gives_the_same_text_from_the_export(exported, ckpt):
    def sample(path: Path) -> str:
        args = [sys.executable, str(ROOT / "sample.py"), "--ckpt", str(path), "--length", "80", "--seed", "3"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert sample(exported) == sample(ckpt)


def test_half_precision_export(ckpt, tmp_path):
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "half"), "--dtype", "bfloat16"]) == 0
    net, reference = read_model(tmp_path / "half").net, read_model(ckpt).net
    assert torch.allclose(outputs(net), outputs(reference), atol=0.05)
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * (
        sum(p.numel() for p in reference.parameters()) * 4)


def test_the_vocabulary_json_preprocesses_a_new_corpus(exported, tmp_path):
    text = tmp_path / "new.txt"
    text.write_text("the king speaks\n" * 20)
    vocab = preprocess(PreprocessSettings(text, tmp_path / "new.h5", tmp_path / "new.json",
                                          vocab=Vocab.load(exported / "vocab.json"), quiet=True))
    assert vocab == Vocab.load(exported / "vocab.json")


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", None])
def test_a_bad_export_is_named(tmp_path, content):
    path = tmp_path / "model.safetensors"
    if content is None:  # a valid safetensors file that is not a charrnn export
        from safetensors.torch import save_file

        save_file({"w": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"export {path}"):
        read_model(path)


def test_export_cli_errors_name_the_file(tmp_path, capsys):
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "out")]) == 2
    assert f"checkpoint {tmp_path / 'missing.ckpt'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
