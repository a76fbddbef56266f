"""The image's entrypoint (docker/entrypoint.sh), run here with its /data in a temporary directory: it
makes the data directory's two subdirectories, and when it cannot, says why instead of going on."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary directory that another user can enter (pytest's own are private to this one)."""
    path = Path(tempfile.mkdtemp())
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def entrypoint(tmp_path: Path, data: Path) -> Path:
    script = tmp_path / "entrypoint.sh"
    script.write_text((ROOT / "docker" / "entrypoint.sh").read_text().replace("/data", str(data)))
    script.chmod(0o755)
    return script


def as_another_user(argv: list[str]) -> list[str]:
    """As root (CI), uid 1000 as compose.yaml's default; else this user, who lacks write permission too."""
    if os.getuid() != 0:
        return argv
    assert shutil.which("setpriv"), "setpriv (util-linux) runs the check as another user"
    return ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", *argv]


def test_makes_the_subdirectories_and_runs_the_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(["sh", str(entrypoint(tmp_path, data)), "echo", "ran"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
    assert (data / "generated").is_dir() and (data / "checkpoints").is_dir()


def test_a_data_directory_it_cannot_write_is_an_error_naming_owner_and_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o555 if os.getuid() != 0 else 0o755)  # root's and 755: unwritable for uid 1000
    script = entrypoint(tmp_path, data)
    done = subprocess.run(as_another_user(["sh", str(script), "echo", "ran"]), capture_output=True, text=True)
    uid = 1000 if os.getuid() == 0 else os.getuid()
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: cannot create {data}/generated: the data directory (DATA_DIR on the host, "
                           f"mounted at {data}) belongs to uid {os.getuid()} and this container runs as uid {uid}")
    assert "export CHARRNN_UID=$(id -u) CHARRNN_GID=$(id -g)" in line


def test_existing_subdirectories_are_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "generated").mkdir(parents=True)
    (data / "checkpoints").mkdir()
    data.chmod(0o555)
    try:
        done = subprocess.run(as_another_user(["sh", str(entrypoint(tmp_path, data)), "true"]), capture_output=True)
    finally:
        data.chmod(0o755)
    assert done.returncode == 0, done.stderr
