"""torch-rnn .t7 checkpoints: the real one in ../shared (validation loss, greedy text, export, server) and
crafted ones (VanillaRNN, batchnorm, dropout, Lua functions, every kind of bad file)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import torch
import torchfile

from charrnn import sample_cli
from charrnn.ckpt.load import CheckpointError, read_checkpoint, read_model
from charrnn.export import export
from charrnn.net_spec import Architecture
from tests.support.paths import ROOT
from tests.support.processes import run, run_ok
from tests.support.torch7 import LuaFunction, Strided, Torch, TorchRNNReference, checkpoint, language_model, write_t7

PRIME = "ROMEO:\n"


def logits(net: torch.nn.Module, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return net(torch.tensor([tokens]))[0][0].double().numpy()  # (T, V)


# ---- the real checkpoint ----------------------------------------------------------------------------
@pytest.mark.slow
def test_validation_loss_is_torch_rnns_own(torch_rnn_t7: Path, shakespeare: Path) -> None:
    """torch-rnn measured 1.5283 on the val split (50 streams x 50 chars, state carried); so must we."""
    proc = run_ok([str(ROOT / "train.py"), "validate", "--model.init_from", str(torch_rnn_t7),
                   "--data.input_txt", shakespeare.name, "--data.batch_size", "50", "--data.seq_length", "50",
                   "--trainer.enable_progress_bar", "false"], shakespeare.parent)
    loss = float(re.search(r"val/loss\s+([0-9.]+)", proc.stdout).group(1))
    assert abs(loss - 1.5283) <= 5e-4, loss
    assert "9,000 iterations, last validation loss 1.5283" in proc.stdout + proc.stderr


def test_greedy_text_equals_torch_rnns_forward_pass(torch_rnn_t7: Path, capsys: pytest.CaptureFixture) -> None:
    length = 300
    assert sample_cli.main(["--ckpt", str(torch_rnn_t7), "--sample", "0", "--start_text", PRIME,
                            "--length", str(length), "--no-include_start"]) == 0
    printed = capsys.readouterr()
    ours = printed.out[:-1]  # sample.py ends with a newline
    assert "torch-rnn lstm 2x128, 65 tokens, 9,000 iterations, last validation loss 1.5283" in printed.err
    model = torchfile.load(str(torch_rnn_t7))[b"model"]
    tokens = [t.decode() for t in model[b"idx_to_token"]]
    reference = TorchRNNReference(model)
    scores = reference.forward([tokens.index(c) for c in PRIME])[-1]
    text = ""
    for _ in range(length):  # sample.lua with -sample 0: the argmax, fed back one character at a time
        text += tokens[int(scores.argmax())]
        scores = reference.forward([tokens.index(text[-1])])[-1]
    assert ours == text
    assert len(set(text)) > 5  # real text, not one character repeated


def test_export_round_trip_gives_the_same_logits(torch_rnn_t7: Path, tmp_path: Path) -> None:
    weights = export(torch_rnn_t7, tmp_path / "exp")
    direct, exported = read_model(torch_rnn_t7), read_model(weights)
    assert exported.vocab == direct.vocab and exported.architecture == direct.architecture
    vocab = direct.vocab
    tokens = vocab.encode("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?")
    np.testing.assert_array_equal(logits(exported.net, tokens), logits(direct.net, tokens))
    assert exported.origin["iterations"] == 9000  # the export keeps what torch-rnn recorded


def test_loading_message_and_architecture(torch_rnn_t7: Path) -> None:
    model = read_model(torch_rnn_t7)
    assert model.architecture == Architecture(len(model.vocab), "lstm", wordvec_size=64, rnn_size=128, num_layers=2)
    info = model.origin
    assert (info["iterations"], info["val_loss"]) == (9000, 1.528281)
    assert info["json"] == torch_rnn_t7.with_suffix(".json").name


@pytest.mark.slow
def test_server_answers_rnn_writer_from_the_t7(torch_rnn_t7: Path, tmp_path: Path) -> None:
    from tests.support.server import running_server

    with running_server(torch_rnn_t7, "--workers", "1", "--no-lowercase", log=tmp_path / "server.log") as url:
        root = httpx.get(url + "/", headers={"Accept": "application/json"}, timeout=30).json()
        assert root["model"]["origin"]["iterations"] == 9000
        assert root["model"]["origin"]["val_loss"] == pytest.approx(1.5283, abs=1e-4)
        sent = "But soft, what light through yonder window"
        reply = httpx.get(f"{url}/generate?start_text={quote(sent, safe='')}&n=3", timeout=30).json()
    assert "message" not in reply and len(reply["completions"]) == 3
    assert reply["start_text"] == quote(sent, safe="")
    assert "9,000 iterations" in (tmp_path / "server.log").read_text()


def test_resuming_from_a_t7_says_to_start_from_it(torch_rnn_t7: Path) -> None:
    with pytest.raises(CheckpointError, match="torch-rnn checkpoint.*--model.init_from"):
        read_checkpoint(torch_rnn_t7)


# ---- crafted models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, batchnorm, dropout, layers, dtype", [
    ("lstm", False, 0.0, 1, np.float32), ("rnn", False, 0.0, 3, np.float32), ("lstm", True, 0.25, 2, np.float32),
    ("rnn", True, 0.0, 2, np.float32), ("lstm", False, 0.0, 2, np.float64)])
def test_crafted_models_compute_torch_rnns_function(tmp_path: Path, kind: str, batchnorm: bool, dropout: float,
                                                    layers: int, dtype: type) -> None:
    path = write_t7(tmp_path / "m.t7", checkpoint(language_model(kind, layers=layers, batchnorm=batchnorm,
                                                                 dropout=dropout, dtype=dtype)))
    model = read_model(path)
    net, vocab = model.net, model.vocab
    assert (model.architecture.model_type, model.architecture.num_layers) == (kind, layers)
    assert model.architecture.dropout == dropout
    tokens = vocab.encode("bad cafe\nfed a bag")
    reference = TorchRNNReference(torchfile.load(str(path))[b"model"])
    np.testing.assert_allclose(logits(net, tokens), reference.forward(tokens), rtol=1e-5, atol=1e-5)
    assert model.origin["iterations"] == 100 and model.origin["val_loss"] == 2.25  # no .json: the .t7's own
    renamed = path.rename(tmp_path / "model.bin")  # recognised by its first bytes too
    np.testing.assert_array_equal(logits(read_model(renamed).net, tokens), logits(net, tokens))


def test_lua_functions_are_never_run(tmp_path: Path) -> None:
    """torchfile has no Lua: a serialized function is inert bytes. Where none is needed it is ignored;
    where a weight should be, the file is refused."""
    marker = tmp_path / "pwned"
    payload = LuaFunction(f"os.execute('touch {marker}')".encode())
    plain = write_t7(tmp_path / "plain.t7", checkpoint(language_model()))
    extra = write_t7(tmp_path / "extra.t7", checkpoint(language_model(), hook=payload, opt={"callback": payload}))
    tokens = [0, 1, 2, 3]
    np.testing.assert_array_equal(logits(read_model(extra).net, tokens), logits(read_model(plain).net, tokens))

    bad = language_model()
    bad.fields["net"].fields["modules"][1].fields["weight"] = payload
    refused = write_t7(tmp_path / "refused.t7", checkpoint(bad))
    with pytest.raises(CheckpointError, match=r"nn\.LSTM\.weight is a serialized Lua function"):
        read_model(refused)
    assert not marker.exists()


def _bad_files(tmp: Path, real: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its one-line error must say)."""
    gmodule = Torch("nn.gModule", {"forwardnodes": [Torch("nngraph.Node", {"data": {"module": Torch("nn.Linear")}})]})
    other = Torch("nn.Sequential", {"modules": [Torch("nn.SpatialConvolution"), Torch("nn.ReLU")]})
    gru = language_model()
    gru.fields["net"].fields["modules"][1].cls = "nn.GRU"
    overreach = language_model()  # a tensor whose size and stride reach past its storage's 8 elements
    overreach.fields["net"].fields["modules"][0].fields["weight"] = Strided((10, 5), (5, 1), np.zeros(8, np.float32))
    files = {
        "empty": (tmp / "empty.t7", "is empty"),
        "truncated": (tmp / "truncated.t7", "is damaged"),
        "not torch7": (tmp / "notes.t7", "is not a Torch7 file"),
        "pytorch zip": (tmp / "model.t7", "is not a Torch7 file"),
        "ascii": (tmp / "ascii.t7", "ascii format"),
        "other network": (write_t7(tmp / "convnet.t7", checkpoint(other)),
                          "holds a Torch7 nn.Sequential, not a torch-rnn"),
        "bare network": (write_t7(tmp / "bare.t7", other), "holds a Torch7 nn.Sequential"),
        "a table": (write_t7(tmp / "table.t7", {"weights": np.zeros(3, np.float32)}), "Lua table with keys weights"),
        "char-rnn": (write_t7(tmp / "lm_lstm_epoch30.00_1.3.t7",
                              {"protos": {"rnn": gmodule, "criterion": Torch("nn.ClassNLLCriterion")},
                               "opt": {"rnn_size": 128}, "vocab": {"a": 1}, "epoch": 30}),
                     "karpathy/char-rnn checkpoint (protos.rnn is a Torch7 nn.gModule"),
        "gru": (write_t7(tmp / "gru.t7", checkpoint(gru)), "nn.GRU at position 2"),
        "tensor outside its storage": (write_t7(tmp / "overreach.t7", checkpoint(overreach)),
                                       "is damaged: a tensor of size (10, 5) reaches outside its storage"),
    }
    files["empty"][0].write_bytes(b"")
    files["truncated"][0].write_bytes(real.read_bytes()[:300_000])
    files["not torch7"][0].write_text("just some notes\n")
    torch.save({"state_dict": {}}, files["pytorch zip"][0])
    files["ascii"][0].write_text("3\n1\n1\n")
    return files


BAD = ["empty", "truncated", "not torch7", "pytorch zip", "ascii", "other network", "bare network", "a table",
       "char-rnn", "gru", "tensor outside its storage"]


@pytest.mark.parametrize("name", BAD)
def test_bad_files_get_one_line_naming_them(name: str, tmp_path: Path, torch_rnn_t7: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    path, says = _bad_files(tmp_path, torch_rnn_t7)[name]
    assert sample_cli.main(["--ckpt", str(path), "--length", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --ckpt checkpoint {path}"), err
    assert says in err and "Traceback" not in err


def test_a_bad_t7_fails_fine_tuning_with_exit_2(tmp_path: Path, tiny_corpus: Path, torch_rnn_t7: Path) -> None:
    path, _ = _bad_files(tmp_path, torch_rnn_t7)["char-rnn"]
    proc = run([str(ROOT / "train.py"), "fit", "--model.init_from", str(path), "--data.input_txt", str(tiny_corpus)],
               tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --model.init_from checkpoint {path} is a karpathy")
