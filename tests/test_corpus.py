"""The corpus cache (charrnn/corpus.py, without Lightning): where its .h5/.json go, and what makes it
preprocess the text again (a change of the text or of a setting the files are made with) or not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from charrnn.corpus import Corpus
from charrnn.errors import UsageError
from charrnn.preprocess.record import vocab_digest
from charrnn.vocab import Vocab

TEXT = "the king and the queen speak of the crown.\n" * 20


def corpus(txt: Path, said: list[str], **settings: object) -> Corpus:
    args = {"input_h5": None, "input_json": None, "val_frac": 0.1, "test_frac": 0.1, "encoding": "utf-8",
            "vocab_from": None, "fixed_vocab": None, "unknown": "drop"} | settings
    return Corpus(str(txt), None, info=said.append, warn=said.append, **args)


def preprocessed(txt: Path, **settings: object) -> bool:
    """Whether a fresh Corpus (as a new run makes) preprocesses the text."""
    said: list[str] = []
    corpus(txt, said, **settings).prepare()
    return any(line.startswith("Preprocessing ") for line in said)


@pytest.fixture
def txt(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def test_the_files_lie_beside_the_text_under_its_name(txt):
    said: list[str] = []
    c = corpus(txt, said)
    assert (c.h5_path, c.json_path) == (txt.with_suffix(".h5"), txt.with_suffix(".json"))
    c.prepare()
    assert said == [f"Preprocessing {txt} -> {c.h5_path}, {c.json_path}"]
    assert sorted(c.vocab) == sorted(set(TEXT))


def test_the_same_text_and_settings_use_the_files_again(txt):
    assert preprocessed(txt)
    assert not preprocessed(txt)


def test_prepare_again_in_one_process_does_nothing(txt):
    said: list[str] = []
    c = corpus(txt, said)
    c.prepare()
    txt.write_text(TEXT + "more\n")  # read once per process: the change is for the next run
    c.prepare()
    assert len(said) == 1


@pytest.mark.parametrize("setting", [{"val_frac": 0.2}, {"test_frac": 0.0}, {"encoding": "latin-1"}])
def test_a_setting_the_files_are_made_with_makes_them_again(txt, setting):
    assert preprocessed(txt)
    assert preprocessed(txt, **setting)
    assert not preprocessed(txt, **setting)


def test_a_changed_text_is_preprocessed_again_even_at_the_same_size_and_time(txt):
    assert preprocessed(txt)
    stat = txt.stat()
    txt.write_text(TEXT.replace("king", "kong"))
    os.utime(txt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert txt.stat().st_size == stat.st_size
    assert preprocessed(txt)


def test_a_fixed_vocabulary_has_files_of_its_own_keyed_by_its_digest(txt, tmp_path):
    vocab = Vocab(sorted(set(TEXT)) + ["z"])
    (tmp_path / "v.json").write_text(json.dumps(vocab.to_json_dict()))
    said: list[str] = []
    c = corpus(txt, said, vocab_from=str(tmp_path / "v.json"), fixed_vocab=vocab)
    stem = f"text.vocab-{vocab_digest(vocab)[:8]}"
    assert (c.h5_path.name, c.json_path.name) == (f"{stem}.h5", f"{stem}.json")
    assert c.vocab == vocab.tokens
    assert not txt.with_suffix(".json").exists()  # the corpus's own files are left as they are


def test_only_the_files_kept_are_used_as_they_are_unless_made_with_other_settings(txt):
    assert preprocessed(txt)
    txt.unlink()
    assert not preprocessed(txt)
    with pytest.raises(UsageError, match=r"^--data.input_txt .*text.txt does not exist, and .*text.json was made "
                                         r"with another --data.val_frac; put the text back"):
        corpus(txt, [], val_frac=0.3).prepare()
