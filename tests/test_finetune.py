"""Fine-tuning: `--model.init_from CKPT` starts a new run from a checkpoint's (or an export's) weights
on a new corpus, encoded with the checkpoint's vocabulary; characters outside it are reported with
counts and left out (or refused with --data.unknown error)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from charrnn.export import export
from charrnn.vocab import Vocab
from tests.support.resume import fit_in, make_work, same_tensors, state

NEW_TEXT = "Zounds! The queen's #1 sword, quoth he: 42 crowns.\n" * 40  # Z ' # 1 4 2 : are new


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint to fine-tune: 5 steps of a 16-unit model on the word-salad corpus."""
    work = make_work(tmp_path_factory.mktemp("base"), every=5)
    fit_in(work, "--trainer.max_steps", "5")
    return work / "ckpt" / "last.ckpt"


@pytest.fixture
def new_corpus(tmp_path: Path) -> Path:
    work = make_work(tmp_path / "finetune", every=5)
    shutil.copy(work / "corpus.txt", work / "old.txt")
    (work / "corpus.txt").write_text(NEW_TEXT)
    return work


def frozen(*args: str) -> tuple[str, ...]:
    """Flags for a run whose weights cannot move (learning rate 0), to see where they started."""
    return ("--model.learning_rate", "0", "--model.state_reset_prob", "0", "--trainer.max_steps", "2", *args)


def test_one_flag_fine_tunes_on_a_new_corpus_with_the_old_vocabulary(base, new_corpus):
    with pytest.warns(UserWarning) as warned:
        # The debug config says rnn_size 32: the architecture comes from the checkpoint (16).
        cli = fit_in(new_corpus, *frozen("--model.init_from", str(base), "--model.rnn_size", "32"))
    old = Vocab(state(base)["hyper_parameters"]["vocab"])
    assert cli.model.vocab == old and cli.model.hparams.rnn_size == 16
    unknown = {"'Z'": 40, '"\'"': 40, "'#'": 40, "'1'": 40, "'4'": 40, "'2'": 40, "':'": 40}
    report = next(str(w.message) for w in warned if "not in the vocabulary" in str(w.message))
    assert report.startswith(f"{7 * 40} characters of --data.input_txt corpus.txt are not in the vocabulary of "
                             f"--data.vocab_from {base}")
    assert all(f"{char}×{n}" in report for char, n in unknown.items()) and "(left out: --data.unknown drop)" in report
    h5 = list(new_corpus.glob("corpus.vocab-*.h5"))
    assert len(h5) == 1 and Vocab.load(h5[0].with_suffix(".json")) == old  # the corpus's own files are not used
    after = state(new_corpus / "ckpt" / "last.ckpt")
    assert same_tensors(after["state_dict"], state(base)["state_dict"])  # it started from the checkpoint's weights
    assert after["global_step"] == 2 and after["hyper_parameters"]["init_from"] == str(base)


def test_unknown_error_refuses_the_corpus_naming_the_flags(base, new_corpus, capsys):
    with pytest.raises(SystemExit) as exit_:  # a user's mistake: one line and status 2, no traceback
        fit_in(new_corpus, "--model.init_from", str(base), "--data.unknown", "error")
    assert exit_.value.code == 2
    assert re.search(r"^error: 280 characters of --data.input_txt corpus.txt .* --data.unknown drop",
                     capsys.readouterr().err, re.MULTILINE)


def test_a_vocabulary_json_works_as_vocab_from(base, new_corpus):
    vocab_json = new_corpus / "vocab.json"
    vocab_json.write_text(json.dumps(Vocab(state(base)["hyper_parameters"]["vocab"]).to_json_dict()))
    cli = fit_in(new_corpus, *frozen("--model.init_from", str(base), "--data.vocab_from", str(vocab_json)))
    assert cli.model.vocab.tokens == state(base)["hyper_parameters"]["vocab"]


def test_another_vocabulary_than_the_weights_is_refused(base, new_corpus, capsys):
    other = new_corpus / "other.json"
    other.write_text(json.dumps(Vocab(sorted(set(NEW_TEXT))).to_json_dict()))
    with pytest.raises(SystemExit) as exit_:
        fit_in(new_corpus, "--model.init_from", str(base), "--data.vocab_from", str(other))
    assert exit_.value.code == 2
    assert f"--model.init_from {base}: its vocabulary (44 tokens) is not the data's" in capsys.readouterr().err


def test_fine_tuning_from_an_export(base, new_corpus, tmp_path):
    exported = export(base, tmp_path / "export").parent
    fit_in(new_corpus, *frozen("--model.init_from", str(exported)))
    after = state(new_corpus / "ckpt" / "last.ckpt")
    assert same_tensors(after["state_dict"], state(base)["state_dict"])


def test_a_resumed_fine_tuning_run_continues_from_its_own_checkpoint(base, new_corpus):
    """The same command with --ckpt_path last: the run's checkpoint wins over --model.init_from."""
    fit_in(new_corpus, "--model.init_from", str(base), "--trainer.max_steps", "5")
    trained = state(new_corpus / "ckpt" / "last.ckpt")["state_dict"]
    cli = fit_in(new_corpus, "--model.init_from", str(base), "--ckpt_path", "last", "--trainer.max_steps", "5")
    assert cli.trainer.global_step == 5
    assert same_tensors({f"net.{k}": v for k, v in cli.model.net.state_dict().items()}, trained)


def test_fine_tuning_a_torch_rnn_t7(new_corpus, torch_rnn_t7, caplog):
    """train.lua's -init_from, here: the .t7's weights, architecture and vocabulary start the run."""
    from charrnn.ckpt.load import read_model

    caplog.set_level("INFO")
    with pytest.warns(UserWarning, match="not in the vocabulary"):  # '#' is not in tiny-shakespeare
        cli = fit_in(new_corpus, *frozen("--model.init_from", str(torch_rnn_t7)))
    model = read_model(torch_rnn_t7)
    net, vocab = model.net, model.vocab
    assert cli.model.vocab == vocab and (cli.model.hparams.rnn_size, cli.model.hparams.num_layers) == (128, 2)
    after = state(new_corpus / "ckpt" / "last.ckpt")
    assert same_tensors({k.removeprefix("net."): v for k, v in after["state_dict"].items()}, net.state_dict())
    assert "9,000 iterations, last validation loss 1.5283" in caplog.text
