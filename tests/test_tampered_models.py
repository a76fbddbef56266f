"""Tampered checkpoints and exports: absurd architectures, weights of the wrong dtype or shape, and
non-finite weights are refused with one line naming the file, before any network is allocated."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from charrnn.ckpt.load import EXPORT_FORMAT, CheckpointError, read_checkpoint, read_model, read_vocab
from charrnn.export import export
from charrnn.export import main as export_main
from charrnn.model import CharRNN
from charrnn.net import CharRNNNet
from charrnn.net_spec import ARCHITECTURE_FIELDS, Architecture, expected_shapes, parameter_count
from charrnn.sample_cli import main as sample_main

VOCAB = list("abcdefgh \n")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model's checkpoint contents, as training writes them."""
    torch.manual_seed(0)
    model = CharRNN(vocab=VOCAB, rnn_size=8, wordvec_size=4, num_layers=2)
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}


def write(ckpt: dict, path: Path, change: Callable[[dict, dict], None], saved: bool = False) -> Path:
    """The checkpoint changed by ``change``; ``saved``: with the architecture saved beside the weights, as
    training writes it now (changed as the hyperparameters are), else as it was written before."""
    hp, sd = dict(ckpt["hyper_parameters"]), dict(ckpt["state_dict"])
    change(hp, sd)
    out = {"state_dict": sd, "hyper_parameters": hp}
    if saved:
        vocab_size = len(hp["vocab"]) if isinstance(hp["vocab"], list) else hp["vocab"]
        out["architecture"] = {"vocab_size": vocab_size} | {k: hp[k] for k in ARCHITECTURE_FIELDS}
    torch.save(out, path)
    return path


@pytest.mark.parametrize(("model_type", "layers", "layer_norm", "tie"),
                         list(itertools.product(["lstm", "gru", "rnn"], [1, 3], [False, True], [False, True])))
def test_expected_shapes_are_the_networks(model_type, layers, layer_norm, tie):
    arch = Architecture(7, model_type=model_type, wordvec_size=6, rnn_size=6 if tie else 5, num_layers=layers,
                        dropout=0.0, layer_norm=layer_norm, tie_weights=tie, weight_drop=0.0)
    net = CharRNNNet(arch)
    assert expected_shapes(arch) == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert parameter_count(arch) == sum(v.numel() for v in net.state_dict().values())


TAMPERED = {
    "num_layers 10^9": (lambda hp, sd: hp.update(num_layers=10**9), "has 4000000003 weight tensors"),
    "rnn_size 10^9": (lambda hp, sd: hp.update(rnn_size=10**9), "imply (4000000000, 4)"),
    "wordvec_size 10^9": (lambda hp, sd: hp.update(wordvec_size=10**9), "imply (10, 1000000000)"),
    "a larger vocabulary": (lambda hp, sd: hp.update(vocab=[chr(0x4E00 + i) for i in range(5000)]),
                            "5000-token vocabulary imply (5000, 4)"),
    "num_layers as text": (lambda hp, sd: hp.update(num_layers="2"), "num_layers '2' is not a whole number"),
    "num_layers 0": (lambda hp, sd: hp.update(num_layers=0), "num_layers 0 is not a whole number ≥1"),
    "dropout nan": (lambda hp, sd: hp.update(dropout=float("nan")), "dropout nan is not a fraction"),
    "unknown model_type": (lambda hp, sd: hp.update(model_type="gpt"), "model_type 'gpt' is not one of"),
    "vocabulary not a list": (lambda hp, sd: hp.update(vocab=7), "vocabulary is not a list of tokens"),
    "duplicate tokens": (lambda hp, sd: hp.update(vocab=["a"] * 10), "duplicate tokens"),
    "int weights": (lambda hp, sd: sd.update({k: v.long() for k, v in sd.items()}), "dtype int64"),
    "one float64 weight": (lambda hp, sd: sd.update({"net.head.bias": sd["net.head.bias"].double()}),
                           "mix dtypes (float32, float64)"),
    "a bool weight": (lambda hp, sd: sd.update({"net.head.weight": sd["net.head.weight"] > 0}), "dtype bool"),
    "a wrong shape": (lambda hp, sd: sd.update({"net.head.bias": torch.zeros(3)}), "head.bias has shape (3,)"),
    "a number for a weight": (lambda hp, sd: sd.update({"net.head.bias": 3}), "head.bias is a int, not a tensor"),
    "an extra weight": (lambda hp, sd: sd.update({"net.more": torch.zeros(2)}), "the file holds 12"),
    "a NaN weight": (lambda hp, sd: sd.update({"net.head.bias": sd["net.head.bias"] * float("nan")}),
                     "head.bias holds NaN or infinite values"),
}


@pytest.mark.parametrize("saved", [True, False], ids=["architecture saved", "written before it was saved"])
@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_checkpoint_is_refused_naming_it(good, tmp_path, case, saved):
    change, words = TAMPERED[case]
    path = write(good, tmp_path / "bad.ckpt", change, saved)
    started = time.monotonic()
    for read in (read_model, read_vocab, read_checkpoint):  # sample/serve/export/init_from, vocab_from, resume
        with pytest.raises(CheckpointError, match=f"checkpoint {path}") as e:
            read(path)
        assert words in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - started < 10  # refused, not built


CONTRADICTIONS = {
    "hyperparameters against the architecture": (lambda c: c["hyper_parameters"].update(num_layers=3),
                                                 "num_layers 3 there, 2 in its architecture"),
    "vocab_size against the vocabulary": (lambda c: c["architecture"].update(vocab_size=11),
                                          "vocab_size 11 is not the 10 tokens of its vocabulary"),
    "an architecture that is no mapping": (lambda c: c.update(architecture=[2, 8]), "is a list, not a mapping"),
    "a saved architecture not valid": (lambda c: c["architecture"].update(num_layers=-1),
                                       "num_layers -1 is not a whole number ≥1"),
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_a_saved_architecture_that_does_not_fit_is_refused(good, tmp_path, case):
    change, words = CONTRADICTIONS[case]
    ckpt = torch.load(write(good, tmp_path / "m.ckpt", lambda hp, sd: None, saved=True), weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.ckpt")
    for read in (read_model, read_checkpoint):
        with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'bad.ckpt'}: ") as e:
            read(tmp_path / "bad.ckpt")
        assert words in str(e.value) and "\n" not in str(e.value)


def test_sample_and_export_refuse_a_tampered_checkpoint_with_one_line(good, tmp_path, capsys):
    path = write(good, tmp_path / "bad.ckpt", lambda hp, sd: hp.update(num_layers=10**9))
    assert sample_main(["--ckpt", str(path), "--length", "5"]) == 2
    assert export_main(["--ckpt", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].startswith(f"error: checkpoint {path}: its architecture")
    assert err[0] == (f"error: --ckpt checkpoint {path}: its architecture (1000000000 lstm layers) has 4000000003 "
                      "weight tensors, but the file holds 11")
    assert not (tmp_path / "out").exists()


def test_float64_checkpoints_and_half_exports_still_load(good, tmp_path):
    path = write(good, tmp_path / "double.ckpt", lambda hp, sd: sd.update({k: v.double() for k, v in sd.items()}))
    net = read_model(path).net
    assert next(net.parameters()).dtype == torch.float32
    for dtype in ("float16", "bfloat16"):
        exported = read_model(export(path, tmp_path / dtype, dtype))
        assert exported.architecture.num_layers == 2 and exported.vocab.tokens == VOCAB


@pytest.fixture(scope="module")
def export_parts(good, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A good export's weights and metadata, as exports were written before the vocab_size was saved."""
    path = tmp_path_factory.mktemp("src") / "good.ckpt"
    write(good, path, lambda hp, sd: None)
    net = read_model(path).net
    arch = {k: good["hyper_parameters"][k] for k in ("model_type", "wordvec_size", "rnn_size", "num_layers",
                                                     "dropout", "layer_norm", "tie_weights", "weight_drop")}
    meta = {"format": EXPORT_FORMAT, "architecture": json.dumps(arch), "vocab": json.dumps(VOCAB)}
    return {k: v.clone() for k, v in net.state_dict().items()}, meta


EXPORT_TAMPERED = {
    "num_layers 10^9": (lambda w, m: m.update(architecture=m["architecture"].replace('"num_layers": 2',
                                                                                     '"num_layers": 1000000000')),
                        "has 4000000003 weight tensors"),
    "deeply nested architecture": (lambda w, m: m.update(architecture="[" * 100_000 + "]" * 100_000),
                                   "no readable vocabulary/architecture"),
    "deeply nested vocabulary": (lambda w, m: m.update(vocab="[" * 100_000 + "]" * 100_000),
                                 "no readable vocabulary/architecture"),
    "int32 weights": (lambda w, m: w.update({k: v.to(torch.int32) for k, v in w.items()}), "dtype I32"),
    "a bool weight": (lambda w, m: w.update({"head.bias": w["head.bias"] > 0}), "dtype BOOL"),
    "one float64 weight": (lambda w, m: w.update({"head.bias": w["head.bias"].double()}), "mix dtypes"),
    "a wrong shape": (lambda w, m: w.update({"head.bias": torch.zeros(3)}), "head.bias has shape (3,)"),
    "another vocab_size": (lambda w, m: m.update(architecture=json.dumps({**json.loads(m["architecture"]),
                                                                          "vocab_size": 9})),
                           "vocab_size 9 is not the 10 tokens of its vocabulary"),
}


@pytest.mark.parametrize("vocab_size", [None, len(VOCAB)], ids=["written before", "with its vocab_size"])
def test_an_export_loads_with_or_without_its_vocab_size(export_parts, good, tmp_path, vocab_size):
    weights, meta = export_parts
    if vocab_size is not None:
        meta = meta | {"architecture": json.dumps({"vocab_size": vocab_size} | json.loads(meta["architecture"]))}
    save_file(weights, tmp_path / "model.safetensors", metadata=meta)
    model = read_model(tmp_path)
    assert model.architecture == Architecture(len(VOCAB), rnn_size=8, wordvec_size=4, num_layers=2)
    assert model.vocab.tokens == VOCAB and all(torch.equal(weights[k], v) for k, v in model.net.state_dict().items())


@pytest.mark.parametrize("vocab_size", [None, len(VOCAB)], ids=["written before", "with its vocab_size"])
@pytest.mark.parametrize("case", list(EXPORT_TAMPERED))
def test_a_tampered_export_is_refused_naming_it(export_parts, tmp_path, case, vocab_size):
    weights, meta = dict(export_parts[0]), dict(export_parts[1])
    if vocab_size is not None:
        meta["architecture"] = json.dumps({"vocab_size": vocab_size} | json.loads(meta["architecture"]))
    change, words = EXPORT_TAMPERED[case]
    change(weights, meta)
    path = tmp_path / "model.safetensors"
    save_file(weights, path, metadata=meta)
    for read in (read_model, read_vocab):
        with pytest.raises(CheckpointError, match=f"export {path}") as e:
            read(tmp_path)
        assert words in str(e.value) and "\n" not in str(e.value)
