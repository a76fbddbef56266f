"""Hostile inputs (issue 22): pipes, devices, directories and exports where a file is wanted, configs that
hang or crash jsonargparse, and flags that ask for more than can be printed at once. Each is one line
``error: ...`` naming the flag or file, exit status 2, promptly."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from charrnn.cli import cli_main
from charrnn.export import main as export_main
from charrnn.sample_cli import main as sample_main
from charrnn.server.cli import main as serve_main
from charrnn.vocab import Vocab
from tests.support.paths import ROOT
from tests.support.processes import run
from tests.support.texts import TINY_TEXT

GUARD_S = 20.0  # after this a reader still waiting on the pipe is let go, so old code fails instead of hanging


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe; a reader that opens it is released (it reads an empty file) after GUARD_S seconds."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    done = threading.Event()

    def release() -> None:
        start = time.monotonic()
        while not done.wait(0.2):
            if time.monotonic() - start < GUARD_S:
                continue
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads
            except OSError as e:
                if e.errno != errno.ENXIO:
                    return

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield path
    done.set()
    thread.join()


@pytest.fixture
def ckpt(debug_run: Path) -> Path:
    return debug_run / "checkpoints" / "debug" / "last.ckpt"


@pytest.fixture
def export_dir(ckpt: Path, tmp_path: Path) -> Path:
    assert export_main(["--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 0
    return tmp_path / "export"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    return tmp_path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def train(*flags: str) -> list[str]:
    return ["fit", "--data.input_txt", "tiny.txt", "--data.url", "null", "--trainer.max_steps", "1",
            "--trainer.accelerator", "cpu", "--model.rnn_size", "8", "--model.wordvec_size", "4",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", *flags]


def train_error(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli_main(train(*flags))
    assert exit_.value.code == 2
    return error_line(capsys)


# ---- odd files given where a model is read -------------------------------------------------------------
def test_a_pipe_is_refused_by_every_flag_that_reads_a_model(fifo, ckpt, work, capsys):
    said = "is a named pipe (FIFO), not a file"
    start = time.monotonic()
    assert sample_main(["--ckpt", str(fifo)]) == 2
    assert f"error: --ckpt checkpoint {fifo} {said}" in error_line(capsys)
    assert export_main(["--ckpt", str(fifo), "--out", str(work / "out")]) == 2
    assert f"checkpoint {fifo} {said}" in error_line(capsys)
    assert serve_main(["--ckpt", str(fifo), "--port", "0"]) == 2
    assert f"error: --ckpt checkpoint {fifo} {said}" in error_line(capsys)
    assert f"--ckpt_path checkpoint {fifo} {said}" in train_error(capsys, "--ckpt_path", str(fifo))
    assert f"--model.init_from checkpoint {fifo} {said}" in train_error(capsys, "--model.init_from", str(fifo))
    assert f"--data.vocab_from: checkpoint {fifo} {said}" in train_error(capsys, "--data.vocab_from", str(fifo))
    with pytest.raises(SystemExit):
        sample_main(["--ckpt", str(ckpt), "--start_file", str(fifo)])
    assert f"--start_file {fifo} {said}" in error_line(capsys)
    assert time.monotonic() - start < GUARD_S  # none of them waited for the pipe


@pytest.mark.parametrize("path, words", [
    ("/dev/zero", "checkpoint /dev/zero is a character device, not a file"),
    ("/", "checkpoint / is a directory with no model.safetensors"),
    ("loop", "checkpoint loop is a symbolic link loop"),
    ("dangling", "checkpoint dangling is a symbolic link to missing.ckpt, which does not exist"),
])
def test_ckpt_says_what_the_path_really_is(work, capsys, path, words):
    os.symlink("loop", work / "loop")
    os.symlink("missing.ckpt", work / "dangling")
    assert sample_main(["--ckpt", path]) == 2
    assert words in error_line(capsys)


def test_ckpt_path_says_what_the_path_really_is(work, capsys, export_dir):
    assert "--ckpt_path checkpoint /dev/zero is a character device" in train_error(capsys, "--ckpt_path", "/dev/zero")
    assert f"--ckpt_path checkpoint {work} is a directory; give a file" in train_error(capsys, "--ckpt_path", str(work))
    for path in (export_dir, export_dir / "model.safetensors"):
        line = train_error(capsys, "--ckpt_path", str(path))
        assert f"--ckpt_path checkpoint {path} is an export (weights only), not a training checkpoint" in line
        assert "--ckpt_path needs a training checkpoint" in line and "--model.init_from takes an export" in line


# ---- torch's advice to load with weights_only=False is never repeated -----------------------------------
@pytest.fixture
def unsafe_files(tmp_path: Path) -> list[Path]:
    class RunsCode:
        def __reduce__(self):  # what an attacker's checkpoint holds
            return (os.system, ("echo pwned",))

    code = tmp_path / "code.ckpt"
    torch.save({"state_dict": RunsCode()}, code)
    text = tmp_path / "text.ckpt"
    text.write_text("hello, this is text\n")
    return [code, text]


def test_no_load_error_advises_weights_only_false(unsafe_files, work, capsys):
    for path in unsafe_files:
        lines = []
        assert sample_main(["--ckpt", str(path)]) == 2
        lines.append(error_line(capsys))
        assert export_main(["--ckpt", str(path), "--out", str(work / "out")]) == 2
        lines.append(error_line(capsys))
        assert serve_main(["--ckpt", str(path), "--port", "0"]) == 2
        lines.append(error_line(capsys))
        lines.append(train_error(capsys, "--ckpt_path", str(path)))
        lines.append(train_error(capsys, "--model.init_from", str(path)))
        for line in lines:
            assert str(path) in line and "weights_only` set to `False" not in line
            assert "weights_only=False" not in line and "Re-running" not in line


def test_code_in_a_checkpoint_is_named_and_text_is_not_a_checkpoint(unsafe_files, capsys):
    code, text = unsafe_files
    assert sample_main(["--ckpt", str(code)]) == 2
    assert "holds code (Trying to load unsupported GLOBAL posix.system" in error_line(capsys)
    assert sample_main(["--ckpt", str(text)]) == 2
    assert error_line(capsys).endswith(f"checkpoint {text} is not a PyTorch checkpoint (neither a zip archive "
                                       "nor a pickle)")


# ---- --ckpt_path words Lightning has, and --trainer.precision ------------------------------------------
@pytest.mark.parametrize("value, words", [
    ("", "--ckpt_path is empty: give a checkpoint file, or last"),
    ("hpc", "--ckpt_path hpc names the checkpoint of SLURM's auto-requeue"),
    ("best", "--ckpt_path best: Lightning's `best` is the best checkpoint of a fit run earlier in the same process"),
])
def test_ckpt_path_special_words_are_one_line(work, capsys, value, words):
    line = train_error(capsys, "--ckpt_path", value)
    assert words in line and "not configured to save the best" not in line


def test_ckpt_path_best_names_the_best_files_there(work, capsys):
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "best-step=10-val_loss=2.5000.ckpt").write_bytes(b"")
    assert "checkpoints/best-step=10-val_loss=2.5000.ckpt" in train_error(capsys, "--ckpt_path", "best")


@pytest.mark.parametrize("flags, words", [
    (["--model.cuda_graph", "true", "--trainer.precision", "bf16-mixed"],
     "--model.cuda_graph true needs --trainer.precision 32-true (not bf16-mixed)"),
    (["--model.cuda_graph", "true", "--trainer.precision", "16-true"],
     "--model.cuda_graph true needs --trainer.precision 32-true (not 16-true)"),
    (["--model.cuda_graph", "true", "--trainer.accumulate_grad_batches", "2"],
     "--model.cuda_graph true updates the weights every step: leave --trainer.accumulate_grad_batches at 1"),
    (["--trainer.precision", "transformer-engine"],
     "--trainer.precision transformer-engine needs NVIDIA's Transformer Engine"),
    (["--trainer.precision", "transformer-engine-float16"],
     "--trainer.precision transformer-engine-float16 needs NVIDIA's Transformer Engine"),
])
def test_precisions_that_cannot_train_are_one_line(work, capsys, flags, words):
    assert words in train_error(capsys, *flags)


def test_cuda_graph_with_32_bit_precision_spelled_otherwise_is_accepted():
    from charrnn.train_flags import check_precision

    for precision in (None, "32-true", "32", 32):
        check_precision({"precision": precision}, {"cuda_graph": True})


# ---- config files ---------------------------------------------------------------------------------------
BILLION_LAUGHS = "\n".join(
    [f'l0: &l0 [{", ".join(["lol"] * 9)}]']
    + [f'l{i}: &l{i} [{", ".join([f"*l{i - 1}"] * 9)}]' for i in range(1, 9)]) + "\n"


def test_a_billion_laughs_config_is_refused_at_once(work):
    (work / "laughs.yaml").write_text(BILLION_LAUGHS)
    proc = run([str(ROOT / "train.py"), *train("--config", "laughs.yaml")], work, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --config laughs.yaml expands to more than 100,000 values through its aliases (*name); write the "
        "values out, or use fewer aliases")


@pytest.mark.parametrize("text, words", [
    (b"seed_everything: 1\n# caf\xe9\n", "--config bad.yaml is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
    (b"samples: 5\n", "--config bad.yaml: samples: 5 is not a group of settings"),
    (b"checkpoint: 5\n", "--config bad.yaml: checkpoint: 5 is not a group of settings"),
    (b"model: [1]\n", "--config bad.yaml: model: [...] is not a group of settings"),
    (b"trainer: null\n", "--config bad.yaml: trainer: null is not a group of settings"),
    (b"data:\n", "--config bad.yaml: data: null is not a group of settings"),
    (b"best_checkpoints: x\n", "--config bad.yaml: best_checkpoints: 'x' is not a group of settings"),
    (b"fit:\n  trainer: 3\n", "--config bad.yaml: fit: trainer: 3 is not a group of settings"),
    (b"seed_everything: 1\nseed_everything: 2\n", "--config bad.yaml has the key 'seed_everything' twice (line 2)"),
    (b"model:\n  rnn_size: 8\n  rnn_size: 16\n", "--config bad.yaml has the key 'rnn_size' twice (line 3)"),
    (b"a: &a [*a]\n", "--config bad.yaml has an alias inside the value it names"),
    (b'model: !!python/object/apply:os.system ["echo pwned"]\n', "--config bad.yaml is not valid YAML: could not "
     "determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system' (line 1, column 8)"),
    (b"model: " + b"[" * 5000 + b"]" * 5000 + b"\n", "--config bad.yaml is nested too deeply"),
    (b"---\nseed_everything: 1\n---\nseed_everything: 2\n", "--config bad.yaml is not valid YAML: expected a single "
     "document in the stream, but found another document (line 3, column 1)"),
    (b"model: {rnn_size: 8\n", "--config bad.yaml is not valid YAML"),
])
def test_config_mistakes_are_one_line_naming_the_file(work, capsys, text, words):
    (work / "bad.yaml").write_bytes(text)
    assert words in train_error(capsys, "--config", "bad.yaml")


def test_libyaml_s_nesting_limit_reads_as_python_s(monkeypatch):
    """Where PyYAML's libyaml has a nesting limit, it stops a deep file before Python's recursion limit does; the
    user reads the same line either way."""
    import yaml

    from charrnn import config_file
    from charrnn.errors import UsageError

    def libyaml_limit(*args, **kwargs):
        raise yaml.scanner.ScannerError("while increasing flow level", None, "exceeded maximum nesting depth", None)

    monkeypatch.setattr(config_file.yaml, "load", libyaml_limit)
    with pytest.raises(UsageError) as e:
        config_file.check_config_text("model: {}", "--config deep.yaml", ("model",))
    assert str(e.value) == "--config deep.yaml is nested too deeply"


def test_a_config_that_is_no_file_is_refused(work, capsys, fifo):
    assert f"--config {fifo} is a named pipe (FIFO)" in train_error(capsys, "--config", str(fifo))
    assert f"--config {work} is a directory; give a file" in train_error(capsys, f"--config={work}")


def test_anchors_merges_and_repeated_nested_keys_are_still_accepted(work):
    from charrnn.config_file import check_config_text

    check_config_text("base: &b {rnn_size: 8}\nmodel:\n  <<: *b\n  rnn_size: 16\ndata: {batch_size: 2}\n"
                      "trainer: {max_steps: 1}\nsamples: {length: 5}\n", "--config x", ("model", "data"))


# ---- big numbers ---------------------------------------------------------------------------------------
def test_a_huge_num_samples_prints_its_first_samples_at_once(ckpt):
    proc = subprocess.Popen([sys.executable, "sample.py", "--ckpt", str(ckpt), "--num_samples", "100000000",
                             "--length", "20", "--seed", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        timer = threading.Timer(60, proc.kill)
        timer.start()
        assert proc.stdout is not None
        first = proc.stdout.readline()
        timer.cancel()
        assert first == b"===== sample 1 =====\n"
    finally:
        proc.kill()
        proc.communicate()


def test_samples_beyond_one_batch_continue_one_random_stream(ckpt, capsys):
    from charrnn.sample_cli import SAMPLES_PER_BATCH

    n = SAMPLES_PER_BATCH + 2
    assert sample_main(["--ckpt", str(ckpt), "--num_samples", str(n), "--length", "30", "--seed", "4"]) == 0
    texts = capsys.readouterr().out.split("===== sample ")[1:]
    assert len(texts) == n and texts[-1].startswith(f"{n} =====\n")
    assert len({t.split("\n", 1)[1] for t in texts}) == n  # the second batch does not repeat the first


def test_a_vocabulary_file_that_is_a_device_is_refused():
    with pytest.raises(ValueError, match="vocabulary file /dev/zero is a character device"):
        Vocab.load("/dev/zero")


def test_a_prime_from_stdin_or_a_process_substitution_is_still_read(ckpt):
    proc = subprocess.run([sys.executable, "sample.py", "--ckpt", str(ckpt), "--start_file", "/dev/stdin",
                           "--length", "5", "--seed", "1"], cwd=ROOT, input="All:\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("All:\n"), proc.stderr[-2000:]


# ---- found in the review: other flags, other odd files ---------------------------------------------------
def test_a_huge_vocabulary_file_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MiB of zeros that take no disk
    with pytest.raises(ValueError, match="vocabulary file .*huge.json is larger than 64 MiB"):
        Vocab.load(huge)


def test_a_proc_file_is_named_as_such(capsys):
    assert sample_main(["--ckpt", "/proc/self/status"]) == 2
    assert error_line(capsys) == ("error: --ckpt checkpoint /proc/self/status is a /proc or /sys file (the kernel's, "
                                  "not data); give a checkpoint file")


def test_preprocess_output_that_is_a_link_loop_is_one_line(work, capsys):
    from charrnn.preprocess import main as preprocess_main

    os.symlink("loop", work / "loop")
    assert preprocess_main(["--input_txt", "tiny.txt", "--output_h5", "loop", "--output_json", "o.json"]) == 2
    assert error_line(capsys) == "error: --output_h5 loop is a symbolic link loop; give a file name"


def test_an_h5_that_is_a_pipe_is_named_as_such(work, capsys, fifo):
    from charrnn.preprocess import main as preprocess_main

    assert preprocess_main(["--input_txt", "tiny.txt", "--output_h5", "o.h5", "--output_json", "o.json"]) == 0
    capsys.readouterr()
    line = train_error(capsys, "--data.input_txt", "null", "--data.input_h5", str(fifo), "--data.input_json", "o.json")
    assert f"--data.input_h5 {fifo} is a named pipe (FIFO)" in line


def test_plot_says_a_file_is_not_a_log_directory(work, capsys):
    from charrnn.plot import main as plot_main

    assert plot_main(["tiny.txt"]) == 2
    assert "log directory tiny.txt is not a directory" in error_line(capsys)


def test_a_huge_number_of_worker_processes_is_refused_before_any_starts(work, capsys):
    from charrnn.errors import MAX_PROCESSES
    from charrnn.server.options import Limits

    with pytest.raises(ValueError, match=f"--workers.*out of range.*--workers ≤ {MAX_PROCESSES}"):
        Limits(workers=10**6, max_pending=10**6, max_connections=10**6)
    line = train_error(capsys, "--data.num_workers", str(10**6))
    assert f"--data.num_workers 1000000: give at most {MAX_PROCESSES}" in line
