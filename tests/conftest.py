"""Shared fixtures: tiny corpora written on the fly, and the one way to reach the real corpus.

Constants and functions that tests share live in ``tests/support/``; tests import them from there."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from tests.support.paths import CORPUS_NAME, ROOT
from tests.support.processes import run_ok
from tests.support.texts import TINY_TEXT

# A suite started in the background of a non-interactive shell (`bash .ci/run &`, nohup) inherits SIGINT
# ignored, and so would every training it starts; the tests of Ctrl-C need Python's own handler, here and
# (a handled signal is reset to its default on exec) in the processes the tests start.
signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python train.py fit --config configs/debug.yaml` on the tiny corpus; returns its working directory
    (checkpoints/debug/, lightning_logs/version_0/, and the run's stdout and stderr in stdout.txt, stderr.txt)."""
    work = tmp_path_factory.mktemp("debug-run")
    (work / "tiny.txt").write_text(TINY_TEXT)
    proc = run_ok([str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "debug.yaml"),
                   "--data.input_txt", "tiny.txt", "--data.url", "null"], work)
    (work / "stdout.txt").write_text(proc.stdout)
    (work / "stderr.txt").write_text(proc.stderr)
    return work


# ---- tests marked `cuda` -------------------------------------------------------------------------------
# Without CUDA they are skipped with a reason that says so, and the session's summary counts them, so a
# run without a GPU never reads as if they had passed. CHARRNN_REQUIRE_CUDA=1 (bench/gpu_check.py sets it
# on the GPU machine) turns that skip into a failure. CHARRNN_CUDA_TESTS_ON=cpu runs the ones that take
# the `cuda_device` fixture on the CPU instead, to check a test's own code before it meets a GPU (it
# proves nothing about CUDA).
NO_CUDA_REASON = "needs CUDA (none here): run `pytest -m cuda` on a GPU machine, or bench/gpu_check.py"
_NOT_RUN = pytest.StashKey[int]()


def _on_cpu_instead(item: pytest.Item) -> bool:
    return os.environ.get("CHARRNN_CUDA_TESTS_ON") == "cpu" and "cuda_device" in getattr(item, "fixturenames", ())


@pytest.fixture
def cuda_device() -> str:
    """The device a `cuda` test trains on: cuda, or cpu under CHARRNN_CUDA_TESTS_ON=cpu without CUDA."""
    return "cuda" if torch.cuda.is_available() or os.environ.get("CHARRNN_CUDA_TESTS_ON") != "cpu" else "cpu"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None or torch.cuda.is_available() or _on_cpu_instead(item):
        return
    item.config.stash[_NOT_RUN] = item.config.stash.get(_NOT_RUN, 0) + 1
    if os.environ.get("CHARRNN_REQUIRE_CUDA") == "1":
        pytest.fail("CHARRNN_REQUIRE_CUDA=1 but torch.cuda.is_available() is False", pytrace=False)
    pytest.skip(NO_CUDA_REASON)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_NOT_RUN, 0)
    if count:
        terminalreporter.write_line(f"{count} CUDA test(s) not run: no CUDA on this machine", yellow=True)
