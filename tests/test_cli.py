"""The real commands, end to end: fit -> checkpoints -> validate/test/predict -> sample.py."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from charrnn.callbacks import StopCheckpoint
from charrnn.ckpt.load import read_model
from charrnn.ckpt.write import SafeCheckpointIO
from charrnn.cli import cli_main
from tests.support.paths import ROOT
from tests.support.processes import run, run_ok
from tests.support.texts import TINY_TEXT

DEBUG = str(ROOT / "configs" / "debug.yaml")


def test_fit_writes_the_configured_checkpoints(debug_run):
    names = sorted(p.name for p in (debug_run / "checkpoints" / "debug").iterdir())
    assert [n for n in names if not n.startswith("best-")] == [".lock", "last.ckpt", "step=10.ckpt", "step=20.ckpt",
                                                                "step=30.ckpt"]
    best = [n for n in names if n.startswith("best-")]
    assert len(best) == 2 and all("-val_loss=" in n for n in best)


def test_every_checkpoint_loads_safely_and_carries_the_vocabulary(debug_run):
    for path in (debug_run / "checkpoints" / "debug").glob("*.ckpt"):
        ckpt = torch.load(path, weights_only=True)
        vocab = ckpt["hyper_parameters"]["vocab"]
        assert len(set(vocab)) == len(vocab) and "C" in vocab and ckpt["global_step"] > 0


def test_logs_go_to_tensorboard(debug_run):
    version = debug_run / "lightning_logs" / "version_0"
    assert (version / "config.yaml").is_file() and list(version.glob("events.out.tfevents.*"))
    assert "vocab:" in (version / "hparams.yaml").read_text()


def test_a_fresh_run_and_its_validation_print_no_false_alarm(debug_run):
    """Lightning's lines that read as a problem where there is none (its warning about the checkpoint
    directory our own lock file is in, torch's LeafSpec deprecation inside Lightning, its LitLogger tip) are
    left out of a fresh ``fit`` and a ``validate``, and no other warning is printed."""
    validate = run_ok([str(ROOT / "train.py"), "validate", "--config", str(ROOT / "configs" / "debug.yaml"),
                       "--data.input_txt", "tiny.txt", "--data.url", "null", "--ckpt_path", "last"], debug_run)
    fit = (debug_run / "stdout.txt").read_text() + (debug_run / "stderr.txt").read_text()
    alarms = ("Tip:", "exists and is not empty", "LeafSpec", "Warning")
    assert [x for x in (fit + validate.stdout + validate.stderr).splitlines() if any(a in x for a in alarms)] == []


def test_sample_py_is_repeatable_with_a_seed(debug_run):
    ckpt = str(debug_run / "checkpoints" / "debug" / "last.ckpt")
    args = [str(ROOT / "sample.py"), "--ckpt", ckpt, "--length", "60", "--start_text", "All:", "--seed", "5"]
    first = run_ok(args, debug_run).stdout
    assert first.startswith("All:") and len(first.rstrip("\n")) == 64
    assert run_ok(args, debug_run).stdout == first
    other = run_ok([*args[:-1], "6"], debug_run).stdout
    assert other != first
    greedy = run_ok([str(ROOT / "sample.py"), "--ckpt", ckpt, "--length", "20", "--sample", "0"], debug_run).stdout
    assert len(greedy) == 21


def test_sample_py_explains_a_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    proc = run([str(ROOT / "sample.py"), "--ckpt", str(bad)], ROOT)
    assert proc.returncode == 2 and "bad.ckpt" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_other_subcommands_run_from_a_checkpoint(debug_run, command, monkeypatch):
    monkeypatch.chdir(debug_run)
    monkeypatch.delenv("TQDM_MINITERS", raising=False)
    cli = cli_main([command, "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--ckpt_path", "checkpoints/debug/last.ckpt", "--trainer.logger", "false"])
    assert cli.trainer.progress_bar_callback.refresh_rate == 10  # the bar does not read the loss every step
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    if command == "predict":
        assert cli.trainer.predict_loop.predictions
    else:
        assert math.isfinite(cli.trainer.callback_metrics[f"{'val' if command == 'validate' else 'test'}/loss"])


def test_a_small_model_overfits_a_tiny_corpus(tmp_path, monkeypatch):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    counts = Counter(TINY_TEXT)
    unigram = -sum(c / len(TINY_TEXT) * math.log(c / len(TINY_TEXT)) for c in counts.values())
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "150", "--trainer.logger", "false",
                    "--trainer.enable_checkpointing", "false",
                    "--trainer.callbacks", "[]", "--model.rnn_size", "64", "--model.learning_rate", "0.01",
                    "--model.lr_schedule", "constant"])
    final = float(cli.trainer.callback_metrics["train/loss"])
    assert final < 0.35 * unigram, (final, unigram)


def test_print_config_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", DEBUG, "--print_config"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    model_section = out.split("model:")[1].split("data:")[0]
    assert "rnn_size: 32" in out and "lr_schedule: step" in out and "vocab:" not in model_section


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_parses(config, capsys):
    """Overlays (all but the two complete configs) are stacked on the default experiment."""
    path = str(ROOT / "configs" / config)
    complete = config in ("shakespeare.yaml", "debug.yaml")
    base = [] if complete else ["--config", str(ROOT / "configs" / "shakespeare.yaml")]
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", *base, "--config", path, "--print_config"])
    assert exit_.value.code == 0 and "trainer:" in capsys.readouterr().out


def test_read_model_rebuilds_from_the_checkpoint_alone(debug_run):
    model = read_model(debug_run / "checkpoints" / "debug" / "last.ckpt")
    net, vocab = model.net, model.vocab
    assert net.rnn.hidden_size == 32 and len(vocab) == net.head.out_features


def test_flags_of_range_types_are_plain_numbers_in_the_checkpoint(tmp_path, monkeypatch):
    """The parser gives a flag's value as its range type (a subclass of int or float); the checkpoint must
    still hold plain numbers, which loading with weights_only and sample.py read without jsonargparse."""
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "2", "--seed_everything", "3", "--data.batch_size", "4",
                    "--model.rnn_size", "16", "--model.dropout", "0.1", "--model.learning_rate", "0.01",
                    "--model.lr_decay_every", "2", "--model.min_lr_ratio", "0.5", "--model.weight_drop", "0.1"])
    assert cli.model.hparams.rnn_size == 16 and cli.datamodule.batch_size == 4
    saved = torch.load(tmp_path / "checkpoints" / "debug" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert saved["rnn_size"] == 16 and saved["learning_rate"] == 0.01
    assert {type(v) for k, v in saved.items() if k != "vocab"} <= {int, float, str, bool, type(None)}


def test_last_checkpoint_is_current_when_max_steps_is_off_the_interval(tmp_path, monkeypatch):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
              "--trainer.max_steps", "25"])  # checkpoints every 10 steps: the last periodic one is at 20
    assert torch.load(tmp_path / "checkpoints" / "debug" / "last.ckpt", weights_only=True)["global_step"] == 25
    # resuming it has nothing left to do
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "25", "--ckpt_path", "last"])
    assert cli.trainer.global_step == 25


def test_predict_prints_the_losses_and_writes_them_to_a_file(debug_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(debug_run)
    common = ["--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
              "--ckpt_path", "checkpoints/debug/last.ckpt", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path)]
    tested = cli_main(["test", *common]).trainer.callback_metrics["test/loss"]
    capsys.readouterr()
    cli_main(["predict", *common])
    out = capsys.readouterr().out
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    batches = {int(r["batch"]) for r in rows}
    streams = {int(r["stream"]) for r in rows}
    assert len(rows) == len(batches) * len(streams) > 1
    mean = sum(float(r["loss"]) for r in rows) / len(rows)
    assert abs(mean - float(tested)) < 1e-4  # the test subcommand's loss, computed the other way
    assert f"{len(batches)} batches x {len(streams)} streams" in out and f"mean loss {mean:.4f}" in out
    assert f"every batch's per-stream loss: {tmp_path / 'predictions.csv'}" in out


def test_checkpoint_and_sample_intervals_are_flags(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "14", "--checkpoint.every_n_train_steps", "7",
                    "--checkpoint.dirpath", "elsewhere", "--best_checkpoints.save_top_k", "1",
                    "--samples.every_n_steps", "4", "--samples.start_text", "All:"])
    names = sorted(p.name for p in (tmp_path / "elsewhere").glob("*.ckpt"))
    assert [n for n in names if not n.startswith("best-")] == ["last.ckpt", "step=14.ckpt", "step=7.ckpt"]
    assert len([n for n in names if n.startswith("best-")]) == 1  # validations at 10 (debug.yaml), top 1
    assert not (tmp_path / "checkpoints").exists()
    out = capsys.readouterr().out
    assert [int(line.split()[-2]) for line in out.splitlines() if "----- sample at step" in line] == [4, 8, 12]
    stops = [cb for cb in cli.trainer.callbacks if isinstance(cb, StopCheckpoint)]
    assert len(stops) == 1 and stops[0].ckpt_path == tmp_path / "elsewhere" / "interrupted.ckpt"
    # --ckpt_path last looks in the group's directory
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--trainer.max_steps", "15", "--checkpoint.dirpath", "elsewhere", "--ckpt_path", "last"])
    assert cli.trainer.global_step == 15


OWN_CALLBACK = """\
trainer:
  callbacks:
    - class_path: {class_path}
      init_args: {{}}
"""


@pytest.mark.parametrize(("class_path", "said"), [
    ("lightning.pytorch.callbacks.ModelCheckpoint", "a ModelCheckpoint: its settings belong in the config's "
     "checkpoint: or best_checkpoints: section (--checkpoint.*, --best_checkpoints.*)"),
    ("charrnn.callbacks.UpToDateCheckpoint", "a UpToDateCheckpoint: its settings belong in the config's "
     "checkpoint: or best_checkpoints: section (--checkpoint.*, --best_checkpoints.*)"),
    ("charrnn.callbacks.TextSamples", "a TextSamples: its settings belong in the config's samples: section "
     "(--samples.*)"),
], ids=["lightnings-ModelCheckpoint", "ours", "TextSamples"])
def test_a_config_listing_a_groups_callback_in_trainer_callbacks_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                                        capsys, class_path, said):
    """As configs did before the groups: it would train with two that disagree, so it is refused before training."""
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    (tmp_path / "old.yaml").write_text(OWN_CALLBACK.format(class_path=class_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", DEBUG, "--config", "old.yaml", "--data.input_txt", "tiny.txt",
                  "--data.url", "null", "--trainer.max_steps", "2", "--trainer.logger", "false"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: trainer.callbacks lists {said}; move them there and remove it from trainer.callbacks")
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_an_explicit_checkpoint_is_read_once(debug_run, command, tmp_path, monkeypatch):
    import shutil

    shutil.copy(debug_run / "tiny.txt", tmp_path)
    ckpt = Path(shutil.copy(debug_run / "checkpoints" / "debug" / "step=20.ckpt", tmp_path)).resolve()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TQDM_MINITERS", raising=False)
    reads, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: (reads.append(f), load(f, *a, **k))[1])
    cli_main([command, "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
              "--ckpt_path", str(ckpt), "--trainer.max_steps", "21"])
    assert [Path(f).resolve() for f in reads if isinstance(f, (str, Path))].count(ckpt) == 1


FASTER_BF16 = {"32-true": 0.2, "bf16-mixed": 0.1}
SLOWER_BF16 = {"32-true": 0.1, "bf16-mixed": 0.8}


@pytest.mark.parametrize(("timings", "flags", "expected", "said"), [
    (FASTER_BF16, [], "bf16-mixed", "--trainer.precision bf16-mixed (2.00x faster than 32-true here"),
    (SLOWER_BF16, [], "32-true", "--trainer.precision 32-true (bf16-mixed 8.00x the time here"),
    (FASTER_BF16, ["--trainer.precision", "32-true"], "32-true", None),     # given: never overridden
    (FASTER_BF16, ["--model.cuda_graph", "true"], "32-true", None),         # the graph step needs 32-true
])
def test_fit_trains_in_the_precision_measured_faster_on_this_cpu(tmp_path, monkeypatch, caplog, timings, flags,
                                                                 expected, said):
    """The choice itself, with timings given: covered whatever CPU runs the test (GRU: no LSTM kernel is needed)."""
    import logging

    import charrnn.precision

    caplog.set_level(logging.INFO)
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(charrnn.precision.ENV, raising=False)
    measured = []
    monkeypatch.setattr(charrnn.precision, "step_seconds", lambda *a: measured.append(a) or timings)
    cli = cli_main(["fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                    "--model.model_type", "gru", "--trainer.precision", "null", "--trainer.max_steps", "2", *flags])
    assert cli.trainer.precision == expected
    assert len(measured) == (said is not None)
    if said is not None:
        assert said in caplog.text and "give --trainer.precision to choose" in caplog.text
    else:
        assert "measured at start" not in caplog.text
