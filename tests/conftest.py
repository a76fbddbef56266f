"""Shared fixtures: tiny corpora written on the fly, and the one way to reach the real corpus."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS_NAME = "tiny-shakespeare.txt"

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 40


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A small English text (about 5 kB) in a fresh directory."""
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    """tiny-shakespeare from data/ (CI copies it there; `make train` downloads it).

    Fails, never skips, when it is missing: a test that needs real text must not pass without it.
    """
    for candidate in (ROOT / "data" / CORPUS_NAME, ROOT.parent / "shared" / "data" / CORPUS_NAME):
        if candidate.is_file():
            return candidate
    pytest.fail(f"{CORPUS_NAME} not found in data/; copy or download it there first")


TORCH_RNN_DIR = ROOT.parent / "shared" / "data" / "torch-rnn"


@pytest.fixture(scope="session")
def torch_rnn_t7() -> Path:
    """The real torch-rnn checkpoint (2x128 LSTM on tiny-shakespeare, 9,000 iterations) in ../shared, with
    its .json beside it. Read in place, never copied into the repository; fails, never skips, without it."""
    path = TORCH_RNN_DIR / "shakespeare_checkpoint_9000.t7"
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        pytest.fail(f"the torch-rnn fixture {path} (and its .json) is missing: these tests read it from "
                    "../shared/data/torch-rnn/ beside the repository")
    return path


@pytest.fixture
def shakespeare(tmp_path: Path, shakespeare_path: Path) -> Path:
    """A private copy of tiny-shakespeare, so tests can write .h5/.json beside it."""
    return Path(shutil.copy(shakespeare_path, tmp_path / CORPUS_NAME))


def run_ok(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in ``cwd`` and fails the test with its stderr unless it exits 0."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python train.py fit --config configs/debug.yaml` on the tiny corpus; returns its working directory
    (checkpoints/debug/, lightning_logs/version_0/, and the run's stdout in stdout.txt)."""
    work = tmp_path_factory.mktemp("debug-run")
    (work / "tiny.txt").write_text(TINY_TEXT)
    proc = run_ok([str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "debug.yaml"),
                   "--data.input_txt", "tiny.txt", "--data.url", "null"], work)
    (work / "stdout.txt").write_text(proc.stdout)
    return work
