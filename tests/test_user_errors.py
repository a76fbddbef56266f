"""A user's mistake is one line `error: ...` naming the flag or file, exit status 2, and nothing written:
train.py's --data/--model flags and seed, vocabulary files, preprocess's outputs and encodings, export's --out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from charrnn import preprocess as preprocess_cli
from charrnn.atomic import atomic_write_all
from charrnn.cli import cli_main
from charrnn.export import main as export_main
from charrnn.model import CharRNN
from charrnn.vocab import Vocab
from tests.support.paths import ROOT
from tests.support.texts import TINY_TEXT


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    (tmp_path / "dup.json").write_text(json.dumps({"idx_to_token": {"1": "a", "2": "a"}}))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "garbage.json").write_text("garbage{")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "garbage.h5").write_bytes(b"\x00not hdf5" * 100)
    os.mkfifo(tmp_path / "fifo")  # stands for /dev/null: a rename over it would replace the device
    return tmp_path


TRAIN_CASES = [
    (["--data.batch_size", "0"], "--data.batch_size: Not of type PositiveInt: 0 does not conform to restriction v>0"),
    (["--data.batch_size", "-3"], "--data.batch_size: Not of type PositiveInt: -3"),
    (["--data.seq_length", "0"], "--data.seq_length: Not of type PositiveInt: 0"),
    (["--data.num_workers", "-1"], "--data.num_workers: Not of type NonNegativeInt: -1"),
    (["--data.val_frac", "-0.1"], "--data.val_frac: Not of type ClosedUnitInterval: -0.1"),
    (["--data.val_frac", "0.6", "--data.test_frac", "0.6"], "--data.val_frac 0.6 and --data.test_frac 0.6"),
    (["--data.encoding", "bogus"], "--data.encoding bogus is not a known text encoding"),
    (["--data.encoding", "base64"], "--data.encoding base64 is not a known text encoding"),
    (["--data.encoding", "utf-16"], "--data.input_txt tiny.txt is not valid utf-16"),
    (["--data.input_txt", "missing.txt"], "--data.input_txt missing.txt does not exist"),
    (["--data.input_txt", "."], "--data.input_txt . is a directory; give the corpus's text file"),
    (["--data.input_txt", "fifo"], "--data.input_txt fifo is a named pipe (FIFO), not a file"),
    (["--data.input_txt", "null", "--data.input_h5", "garbage.h5", "--data.input_json", "dup.json"],
     "--data.input_json: dup.json: vocabulary has duplicate tokens ('a' more than once)"),
    (["--data.vocab_from", "missing.json"], "--data.vocab_from: vocabulary file missing.json does not exist"),
    (["--data.vocab_from", "garbage.json"], "--data.vocab_from: vocabulary file garbage.json is not valid JSON"),
    (["--data.vocab_from", "list.json"], "--data.vocab_from: list.json: no idx_to_token or token_to_idx"),
    (["--data.vocab_from", "dup.json"], "--data.vocab_from: dup.json: vocabulary has duplicate tokens"),
    (["--data.vocab_from", "deep.json"], "--data.vocab_from: vocabulary file deep.json is nested too deeply"),
    (["--data.vocab_from", "garbage.h5"], "--data.vocab_from: checkpoint garbage.h5"),
    (["--seed_everything", str(2**70)], "--seed_everything: Does not validate against any of the Union subtypes; "
     f"Expected a <class 'bool'>; Not of type Seed: does not conform to restriction v>=0 and v<{2**32}; "
     f"Given value: {2**70}"),
    (["--seed_everything", "-1"], "Not of type Seed: does not conform to restriction v>=0 and v<4294967296; "
                                  "Given value: -1"),
    (["--model.rnn_size", "0"], "--model.rnn_size: Not of type PositiveInt: 0 does not conform to restriction v>0"),
    (["--model.dropout", "2"], "--model.dropout: Not of type ClosedUnitInterval: 2"),
    (["--model.weight_drop", "1"], "--model.weight_drop: Not of type HalfOpenUnitInterval: 1"),
    (["--model.tie_weights", "true", "--model.wordvec_size", "8"],
     "--model.tie_weights needs wordvec_size == rnn_size (8 and 32)"),
    (["--model.learning_rate", "-1"], "--model.learning_rate: Not of type FiniteNonNegativeFloat: -1"),
    (["--model.learning_rate", "inf"], "--model.learning_rate: Not of type FiniteNonNegativeFloat: inf"),
    (["--model.lr_decay_every", "0"], "--model.lr_decay_every: Not of type PositiveInt: 0"),
    (["--model.lr_decay_factor", "-1"], "--model.lr_decay_factor: Not of type FinitePositiveFloat: -1"),
    (["--model.min_lr_ratio", "2"], "--model.min_lr_ratio: Not of type ClosedUnitInterval: 2"),
    (["--model.state_reset_prob", "1.5"], "--model.state_reset_prob: Not of type ClosedUnitInterval: 1.5"),
    (["--model.num_layers", str(10**9)], "--model.num_layers 1000000000, --model.rnn_size 32"),
    (["--model.rnn_size", str(10**11)], "GiB for its weights alone"),
    (["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer"),
    (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches 0: give a whole number ≥1"),
]


@pytest.mark.parametrize(("flags", "words"), TRAIN_CASES, ids=[" ".join(f) for f, _ in TRAIN_CASES])
def test_train_flag_mistakes_are_one_line_and_write_nothing(work, capsys, flags, words):
    settings = preprocess_cli.PreprocessSettings("tiny.txt", "tiny.h5", "tiny.json", quiet=True)
    preprocess_cli.preprocess(settings)  # as an earlier run did: the corpus is in its files, which stay as they are
    before = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--data.input_txt", "tiny.txt",
                  "--data.url", "null", "--trainer.max_steps", "2", *flags])
    assert exit_.value.code == 2
    assert words in one_error_line(capsys)
    assert {p: p.stat().st_mtime_ns for p in work.iterdir()} == before  # no checkpoint, log or corpus file


def test_model_ranges_leave_good_values_alone():
    model = CharRNN(vocab=list("ab"), learning_rate=0.0, min_lr_ratio=1.0, state_reset_prob=1.0, lr_decay_factor=2.0)
    assert model.hparams.learning_rate == 0.0


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps({"idx_to_token": {"1": "a", "2": "b", "3": "a"}}), "duplicate tokens ('a' more than once)"),
    (json.dumps({"idx_to_token": 5}), "no idx_to_token or token_to_idx object"),
    (json.dumps({"idx_to_token": {"x": "a"}}), "token indices are not all whole numbers"),
    (json.dumps({"token_to_idx": {"a": [1]}}), "token indices are not all whole numbers"),
    (json.dumps({"idx_to_token": {"1": 5}}), "tokens are not all strings"),
    (json.dumps({"idx_to_token": {"1": "ab"}}), "neither one character nor a byte"),
    ('"just a string"', "no idx_to_token or token_to_idx object"),
])
def test_a_bad_vocabulary_file_is_a_value_error_naming_it(tmp_path, text, words):
    path = tmp_path / "v.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)) as e:
        Vocab.load(path)
    assert words in str(e.value)
    with pytest.raises(ValueError, match="is a directory"):
        Vocab.load(tmp_path)


def preprocess(*args: str) -> int:
    return preprocess_cli.main(["--input_txt", "tiny.txt", "--quiet", *args])


@pytest.mark.parametrize(("args", "words"), [
    (["--output_h5", "sub", "--output_json", "o.json"], "--output_h5 sub is a directory or a device"),
    (["--output_h5", "o.h5", "--output_json", "sub"], "--output_json sub is a directory or a device"),
    (["--output_h5", "fifo", "--output_json", "o.json"], "--output_h5 fifo is a directory or a device"),
    (["--output_h5", "", "--output_json", "o.json"], "--output_h5 is empty"),
    (["--output_h5", "o.h5", "--output_json", "o.json", "--encoding", "rot13"], "--encoding rot13 is not a known"),
    (["--output_h5", "o.h5", "--output_json", "o.json", "--encoding", "utf-16"], "is not valid utf-16"),
    (["--output_h5", "o.h5", "--output_json", "o.json", "--vocab", "deep.json"], "--vocab vocabulary file deep"),
    (["--output_h5", "o.h5", "--output_json", "o.json", "--vocab", "dup.json"], "--vocab dup.json: vocabulary has"),
])
def test_preprocess_mistakes_are_one_line_and_write_nothing(work, capsys, args, words):
    (work / "sub").mkdir()
    before = set(work.iterdir())
    assert preprocess(*args) == 2
    assert words in one_error_line(capsys)
    assert set(work.iterdir()) == before and (work / "fifo").is_fifo()


@pytest.fixture
def ckpt(work: Path) -> Path:
    model = CharRNN(vocab=list(dict.fromkeys(TINY_TEXT)), rnn_size=8, wordvec_size=4, num_layers=1)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, work / "m.ckpt")
    return work / "m.ckpt"


def test_export_mistakes_are_one_line_and_keep_what_was_there(work, ckpt, capsys):
    (work / "file").write_text("x")
    for args, words in [(["--out", "file/sub"], "--out file/sub: cannot write"), (["--out", ""], "--out is empty"),
                        (["--out", "file"], "--out file is a file"),
                        (["--ckpt", "", "--out", "e"], "the path is empty")]:
        assert export_main(["--ckpt", str(ckpt), *args]) == 2
        assert words in one_error_line(capsys)
    assert export_main(["--ckpt", str(ckpt), "--out", "e"]) == 0
    old = (work / "e" / "model.safetensors").read_bytes()
    (work / "e" / "vocab.json").unlink()
    (work / "e" / "vocab.json").mkdir()  # the second file cannot be written: the first must not change
    assert export_main(["--ckpt", str(ckpt), "--out", "e", "--dtype", "float16"]) == 2
    assert "vocab.json is a directory" in one_error_line(capsys)
    assert (work / "e" / "model.safetensors").read_bytes() == old


def test_atomic_write_all_writes_all_or_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old a")

    def fail(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="(?i)no space"):  # NoSpaceError, naming the file
        atomic_write_all({a: lambda f: f.write(b"new a"), b: fail})
    assert a.read_text() == "old a" and not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    atomic_write_all({a: lambda f: f.write(b"new a"), b: lambda f: f.write(b"new b")})
    assert a.read_text() == "new a" and b.read_text() == "new b"


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"temperature": float("nan")}, {"every_n_steps": -1},
                                    {"length": -5}, {"seed": 2**64}])
def test_text_samples_refuses_its_settings_before_training(kwargs):
    from charrnn.callbacks import TextSamples
    from charrnn.errors import UsageError

    with pytest.raises(UsageError, match="^TextSamples callback: "):
        TextSamples(**kwargs)
    TextSamples(temperature=0.0, every_n_steps=0, length=0)  # greedy, off, empty: all meaningful


def test_an_h5_of_another_vocabulary_is_refused_before_training(work, capsys):
    from charrnn.preprocess import PreprocessSettings
    from charrnn.preprocess import preprocess as make

    make(PreprocessSettings(work / "tiny.txt", work / "tiny.h5", work / "tiny.json", quiet=True))
    tokens = Vocab.load(work / "tiny.json").tokens
    (work / "small.json").write_text(json.dumps(Vocab(tokens[:10]).to_json_dict()))
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--data.input_txt", "null",
                  "--data.input_h5", "tiny.h5", "--data.input_json", "small.json", "--trainer.max_steps", "2"])
    assert exit_.value.code == 2
    assert one_error_line(capsys) == (f"error: the train split of tiny.h5 holds token indices 1..{len(tokens)}, but "
                                      "its vocabulary (--data.input_json) has 10 tokens: the .h5 and .json do not "
                                      "belong together")
    assert not (work / "checkpoints").exists()


def test_init_from_a_diverged_checkpoint_is_refused_naming_the_flag(work, ckpt, capsys):
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"]["net.head.bias"][0] = float("nan")
    torch.save(state, work / "nan.ckpt")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--data.input_txt", "tiny.txt",
                  "--data.url", "null", "--trainer.max_steps", "2", "--model.init_from", "nan.ckpt"])
    assert exit_.value.code == 2
    assert one_error_line(capsys).startswith("error: --model.init_from checkpoint nan.ckpt: weight head.bias holds NaN")
    assert not (work / "checkpoints").exists()


@pytest.mark.parametrize("stale", ["[1, 2]", '{"charrnn": 5}', "[" * 100_000 + "]" * 100_000, "garbage{"])
@pytest.mark.parametrize("fixed", [False, True])
def test_an_unreadable_derived_json_is_made_again(work, stale, fixed):
    from charrnn.data import CharDataModule

    if fixed:
        (work / "base.json").write_text(json.dumps(Vocab(sorted(set(TINY_TEXT))).to_json_dict()))
    data = CharDataModule("tiny.txt", vocab_from="base.json" if fixed else None)
    data.h5_path.write_bytes(b"old")
    data.json_path.write_text(stale)
    data.prepare()
    assert Vocab.load(data.json_path).tokens  # rewritten: a readable vocabulary again


def test_a_full_disk_during_preprocessing_is_one_line_and_keeps_the_old_pair(work, capsys, monkeypatch):
    assert preprocess("--output_h5", "o.h5", "--output_json", "o.json") == 0
    old = (work / "o.h5").read_bytes(), (work / "o.json").read_bytes()
    (work / "tiny.txt").write_text(TINY_TEXT.upper())

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("charrnn.preprocess.output.allocate_h5", full)
    assert preprocess("--output_h5", "o.h5", "--output_json", "o.json") == 2
    assert "--output_h5 o.h5 / --output_json o.json could not be written ([Errno 28] No space" in one_error_line(capsys)
    assert ((work / "o.h5").read_bytes(), (work / "o.json").read_bytes()) == old
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no temporary file left
