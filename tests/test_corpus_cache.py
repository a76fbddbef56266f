"""The preprocessed .h5/.json are a cache of the text: reused only when made from the same text with every
setting that changes them, and never in a way that turns off a check that a flag asks for."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from charrnn.data import CharDataModule
from charrnn.errors import UsageError
from charrnn.model import CharRNN
from charrnn.vocab import Vocab
from tests.support.paths import ROOT


@pytest.fixture
def ab_vocab(tmp_path):
    """A vocabulary of only 'a' and 'b', which leaves out most characters of any English text."""
    path = tmp_path / "v.json"
    path.write_text(json.dumps(Vocab(["a", "b"]).to_json_dict()))
    return path


def data(corpus, warnings=None, **kwargs) -> CharDataModule:
    dm = CharDataModule(str(corpus), batch_size=1, seq_length=4, **kwargs)
    if warnings is not None:
        dm.corpus.warn = warnings.append
    return dm


def test_unknown_error_still_refuses_a_text_that_drop_has_cached(tiny_corpus, ab_vocab):
    warnings: list[str] = []
    assert data(tiny_corpus, warnings, vocab_from=str(ab_vocab), unknown="drop").vocab == ["a", "b"]
    assert len(warnings) == 1 and "(left out: --data.unknown drop)" in warnings[0]
    with pytest.raises(UsageError, match=r"characters of --data.input_txt .* are not in .*--data\.unknown drop"):
        _ = data(tiny_corpus, vocab_from=str(ab_vocab), unknown="error").vocab


def test_a_cached_drop_says_again_what_it_leaves_out(tiny_corpus, ab_vocab):
    first: list[str] = []
    data(tiny_corpus, first, vocab_from=str(ab_vocab)).prepare()
    h5 = next(tiny_corpus.parent.glob("tiny.vocab-*.h5"))
    stamp = h5.stat().st_mtime_ns
    again: list[str] = []
    data(tiny_corpus, again, vocab_from=str(ab_vocab)).prepare()
    assert h5.stat().st_mtime_ns == stamp and again == first  # reused, and the report repeated word for word


def test_an_error_run_that_passed_is_reused_by_drop(tiny_corpus):
    own = tiny_corpus.parent / "own.json"
    data(tiny_corpus).prepare()
    own.write_text(tiny_corpus.with_suffix(".json").read_text())
    data(tiny_corpus, vocab_from=str(own), unknown="error").prepare()
    h5 = next(tiny_corpus.parent.glob("tiny.vocab-*.h5"))
    stamp = h5.stat().st_mtime_ns
    warnings: list[str] = []
    data(tiny_corpus, warnings, vocab_from=str(own), unknown="drop").prepare()
    assert h5.stat().st_mtime_ns == stamp and not warnings  # nothing was left out: the same files


def test_files_named_by_hand_are_made_again_for_another_vocabulary(tiny_corpus, ab_vocab, tmp_path):
    paths = {"input_h5": str(tmp_path / "c.h5"), "input_json": str(tmp_path / "c.json")}
    assert data(tiny_corpus, vocab_from=str(ab_vocab), **paths).vocab == ["a", "b"]
    assert len(data(tiny_corpus, **paths).vocab) == len(set(tiny_corpus.read_text()))  # its own, not a and b
    assert data(tiny_corpus, vocab_from=str(ab_vocab), **paths).vocab == ["a", "b"]


@pytest.mark.parametrize(("setting", "flag"), [({"val_frac": 0.2}, "--data.val_frac"),
                                               ({"test_frac": 0.0}, "--data.test_frac"),
                                               ({"encoding": "bytes"}, "--data.encoding")])
def test_every_setting_makes_the_files_again(tiny_corpus, setting, flag):
    data(tiny_corpus).prepare()
    json_path = tiny_corpus.with_suffix(".json")
    data(tiny_corpus, **setting).prepare()
    made = json.loads(json_path.read_text())["charrnn"]
    assert all(made[k] == v for k, v in setting.items())
    tiny_corpus.unlink()  # only the files kept: settings that are not theirs are refused, never ignored
    data(tiny_corpus, **setting).prepare()
    with pytest.raises(UsageError, match=rf"does not exist, and .*tiny.json was made with another {flag};"):
        data(tiny_corpus).prepare()


def test_kept_files_of_a_dropping_run_are_still_checked(tiny_corpus, ab_vocab):
    data(tiny_corpus, vocab_from=str(ab_vocab)).prepare()
    tiny_corpus.unlink()
    with pytest.raises(UsageError, match=r"--data\.unknown drop to leave them out"):
        data(tiny_corpus, vocab_from=str(ab_vocab), unknown="error").prepare()


def test_the_corpus_reads_no_model(tiny_corpus, tmp_path):
    """--data.vocab_from may name a model; the DataModule reads it (charrnn.ckpt.load) and hands the
    vocabulary to the Corpus, which imports no model reader."""
    from charrnn.ckpt.load import read_model
    from charrnn.corpus import Corpus
    from charrnn.export import write

    code = "import sys, charrnn.corpus; print(sorted(m for m in sys.modules if m.startswith('charrnn.ckpt.load')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
    model = CharRNN(list("ab"), rnn_size=4, wordvec_size=2, num_layers=1)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "m.ckpt")
    exported = write(read_model(tmp_path / "m.ckpt"), "m.ckpt", tmp_path / "export")
    dm = data(tiny_corpus, vocab_from=str(exported), unknown="drop")
    assert isinstance(dm.corpus, Corpus) and dm.corpus.fixed_vocab == Vocab(["a", "b"]) and dm.vocab == ["a", "b"]
