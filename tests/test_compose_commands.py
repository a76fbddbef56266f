"""Each container's command from compose.yaml, run here with this Python instead of in the image.

The command is translated the way the image lays things out: /app is the repository, /data a temporary
data directory (configs under /app are copied with their /data paths rewritten), the working directory
is the service's, and the Dockerfile's ENTRYPOINT runs first. Training is cut down to a few steps of a
tiny model by flags appended to the command; servers listen on a free loopback port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.compose import command, dockerfile_instructions
from tests.support.paths import ROOT
from tests.support.processes import free_port

CORPUS = "tiny-shakespeare.txt"
TINY_TRAINING = (
    "--trainer.accelerator cpu --trainer.max_steps 4 --trainer.val_check_interval 2 --trainer.limit_val_batches 1 "
    "--trainer.enable_progress_bar false --model.rnn_size 16 --model.wordvec_size 8 --model.num_layers 1 "
    "--data.batch_size 2 --data.seq_length 16"
).split()


def service(name: str) -> dict:
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"][name]
    return {**spec, "command": command(name, os.environ)}


def entrypoint() -> list[str]:
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, "the Dockerfile should have one ENTRYPOINT"
    return json.loads(lines[0].removeprefix("ENTRYPOINT "))


def copied_from(path: str) -> Path:
    """The repository file that the Dockerfile copies to ``path`` in the image."""
    sources = [rest.split()[0] for op, rest in dockerfile_instructions()
               if op == "COPY" and not rest.startswith("--from") and rest.split()[-1] == path]
    assert len(sources) == 1, f"the Dockerfile should copy one file to {path}"
    return ROOT / sources[0]


def on_host(args: list[str], data: Path, scratch: Path) -> list[str]:
    """The container's argv as this machine runs it (a shell script's words one by one)."""
    out = []
    for arg in args:
        if " " in arg:  # a shell script: the entrypoint's, the train service's
            out.append(" ".join(on_host(arg.split(" "), data, scratch)))
            continue
        if arg == "/usr/local/bin/charrnn-entrypoint":  # the image's entrypoint script, with its /data here
            script = scratch / "entrypoint.sh"
            script.write_text(copied_from(arg).read_text().replace("/data", str(data)))
            out += ["sh", str(script)]
            continue
        if arg == "python":
            arg = sys.executable
        elif arg == "tensorboard":
            arg = str(Path(sys.executable).with_name("tensorboard"))
        elif arg.startswith("/app/"):
            source = ROOT / arg.removeprefix("/app/")
            if source.suffix == ".yaml":
                copied = scratch / source.name
                copied.write_text(source.read_text().replace("/data", str(data)))
                source = copied
            arg = str(source)
        elif arg.startswith("/data"):
            arg = str(data) + arg.removeprefix("/data")
        elif "/data" in arg:  # the entrypoint's script
            arg = arg.replace("/data", str(data))
        out.append(arg)
    return out


def run_service(
    name: str, data: Path, tmp_path: Path, extra: list[str] = (), background: bool = False
) -> subprocess.Popen | str:
    """Runs the service's command to the end and returns its output, or starts it in the background."""
    spec = service(name)
    scratch = tmp_path / "app"
    scratch.mkdir(exist_ok=True)
    argv = on_host(entrypoint() + spec["command"], data, scratch) + list(extra)
    cwd = on_host([spec["working_dir"]], data, scratch)[0]
    if background:
        return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed: {argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def data(tmp_path: Path, tiny_corpus: Path) -> Path:
    """A data directory as a user mounts it: just the corpus (the entrypoint makes the rest)."""
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / CORPUS).write_bytes(tiny_corpus.read_bytes())
    return directory


def test_preprocess_writes_to_generated(data: Path, tmp_path: Path) -> None:
    run_service("preprocess", data, tmp_path)
    vocab = json.loads((data / "generated" / "tiny-shakespeare.json").read_text())
    assert set(vocab["token_to_idx"]) == set((data / CORPUS).read_text())
    assert (data / "generated" / "tiny-shakespeare.h5").is_file()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data directory after the train service's command (cut down to a few steps), and its scratch."""
    tmp_path = tmp_path_factory.mktemp("trained")
    data = tmp_path / "data"
    data.mkdir()
    (data / CORPUS).write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 60)
    run_service("train", data, tmp_path, TINY_TRAINING)
    return data, tmp_path


@pytest.mark.slow
def test_train_keeps_everything_in_the_data_directory(trained: tuple[Path, Path]) -> None:
    data, _ = trained
    assert (data / "generated" / "tiny-shakespeare.h5").is_file()
    assert (data / "checkpoints" / "shakespeare" / "last.ckpt").is_file()
    assert list((data / "lightning_logs").glob("version_*/events.out.tfevents.*"))
    assert {p.name for p in data.iterdir()} == {CORPUS, "checkpoints", "generated", "lightning_logs"}


@pytest.mark.slow
def test_sample_reads_the_last_checkpoint(trained: tuple[Path, Path]) -> None:
    data, tmp_path = trained
    text = run_service("sample", data, tmp_path)
    assert len(text) == 500 + 1  # --length 500, then a newline
    assert set(text) <= set((data / CORPUS).read_text())


def wait_for_json(server: subprocess.Popen, url: str, seconds: float = 90) -> object:
    """The JSON at ``url`` once the server answers; fails if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, f"the server exited:\n{server.stdout.read()}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except OSError:
            assert time.monotonic() < deadline, f"no answer from {url} within {seconds} s"
            time.sleep(0.5)


def test_tensorboard_serves_the_logs(data: Path, tmp_path: Path) -> None:
    port = free_port()
    # Later flags win: the host run listens on loopback only, on a free port.
    server = run_service("tensorboard", data, tmp_path, ["--host", "127.0.0.1", "--port", str(port)], background=True)
    try:
        assert wait_for_json(server, f"http://127.0.0.1:{port}/data/logdir")["logdir"] == str(data / "lightning_logs")
    finally:
        server.terminate()
        server.wait(timeout=30)



@pytest.mark.slow
def test_serve_answers_with_the_last_checkpoint(trained: tuple[Path, Path]) -> None:
    data, tmp_path = trained
    port = free_port()
    server = run_service("serve", data, tmp_path, ["--host", "127.0.0.1", "--port", str(port)], background=True)
    try:
        # rnn-writer's first request: GET / must answer with JSON.
        assert isinstance(wait_for_json(server, f"http://127.0.0.1:{port}/"), dict)
        completions = wait_for_json(server, f"http://127.0.0.1:{port}/generate?start_text=ROMEO&n=2")
        assert isinstance(completions["completions"], list)
    finally:
        server.terminate()
        server.wait(timeout=30)
