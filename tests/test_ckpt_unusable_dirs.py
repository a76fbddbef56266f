"""Checkpoint and log directories that a run cannot use: a symbolic link as the lock, a file, a read-only or
full filesystem, an empty name. Each is refused in one line (exit status 2) that names the directory or the
flag, and nothing is written through a link. The filesystems are real: small tmpfs mounts (root only)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from charrnn.callbacks.run_directory import RunDirectory, UnusableDirectory, move_aside
from tests.support.paths import DEBUG, ROOT
from tests.support.processes import run
from tests.support.texts import TINY_TEXT

FAST = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
        "--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def fit_here(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``train.py fit`` with the debug config on a tiny corpus, in ``work`` (a fresh process)."""
    (work / "tiny.txt").write_text(TINY_TEXT)
    return run([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--data.input_txt", "tiny.txt", "--data.url", "null",
                *FAST, *args], work)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one ``error: ...`` line of a run that exited with status 2, with no traceback anywhere."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


@pytest.fixture
def tmpfs() -> Iterator[Callable[..., Path]]:
    """``tmpfs(path, size)`` mounts a small tmpfs at ``path``; every mount is undone after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(path: Path, size: str = "256k") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path, leave: int = 0) -> None:
    """Fills the filesystem of ``path`` up to ``leave`` bytes."""
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(path / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
            f.flush()
        except OSError:
            pass


# ---- the lock and the moves never go through a symbolic link ----------------------------------------------

def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / ".lock").symlink_to(victim)
    line = one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ck"))
    assert line == ("error: ck/.lock is a symbolic link: a run never writes through one. Remove it (rm ck/.lock) "
                    "or give this run another checkpoint directory")
    assert victim.read_text() == "mine\n"
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [".lock"]  # nothing written beside it


def test_a_dangling_symlink_as_the_lock_creates_nothing(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / ".lock").symlink_to(tmp_path / "made-through-the-link")
    assert "ck/.lock is a symbolic link" in one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ck"))
    assert not (tmp_path / "made-through-the-link").exists()


def test_a_lock_that_is_a_hard_link_is_refused_and_the_other_file_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / "ck").mkdir()
    os.link(victim, tmp_path / "ck" / ".lock")
    with pytest.raises(UnusableDirectory, match=r"\.lock is not a plain file of its own \(a hard link"):
        RunDirectory()._lock(tmp_path / "ck")
    assert victim.read_text() == "mine\n"


def test_a_lock_that_is_a_fifo_is_refused_at_once(tmp_path):
    (tmp_path / "ck").mkdir()
    os.mkfifo(tmp_path / "ck" / ".lock")
    raised: list[BaseException] = []

    def lock() -> None:
        try:
            RunDirectory()._lock(tmp_path / "ck")
        except BaseException as e:  # noqa: BLE001 (handed to the test's thread)
            raised.append(e)

    thread = threading.Thread(target=lock, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "opening a FIFO as the lock blocks"
    assert len(raised) == 1 and "is not a plain file of its own" in str(raised[0])


class _Module:
    hparams: dict = {}


def test_moving_an_earlier_run_aside_never_goes_through_a_link(tmp_path):
    directory, outside = tmp_path / "ck", tmp_path / "outside"
    directory.mkdir()
    outside.mkdir()
    victim = tmp_path / "victim.ckpt"
    victim.write_bytes(b"not a checkpoint of this run")
    (directory / "last.ckpt").write_bytes(b"an earlier run's")
    (directory / "linked.ckpt").symlink_to(victim)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in directory.glob("*.ckpt"))))
    (directory / f"earlier-{stamp}").symlink_to(outside)  # the folder the move would make: a link elsewhere
    move_aside(directory, _Module())
    assert list(outside.iterdir()) == []  # nothing went into the linked folder
    (moved,) = [p for p in directory.iterdir() if p.name.startswith("earlier-") and not p.is_symlink()]
    assert moved.name == f"earlier-{stamp}-1"
    assert (moved / "last.ckpt").read_bytes() == b"an earlier run's"
    assert (moved / "linked.ckpt").is_symlink() and victim.read_bytes() == b"not a checkpoint of this run"
    assert sorted(p.name for p in directory.iterdir()) == [f"earlier-{stamp}", f"earlier-{stamp}-1"]


# ---- directories that cannot be written in ---------------------------------------------------------------

def test_a_checkpoint_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "ck").write_text("a file")
    assert one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ck")) == (
        "error: the checkpoint directory ck (--checkpoint.dirpath) is a file, or lies below one: give a directory")


def test_a_lock_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "ck" / ".lock").mkdir(parents=True)
    assert one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ck")) == (
        "error: ck/.lock is a directory: it must be the run's lock file. Remove it or give this run another "
        "checkpoint directory")


def test_a_read_only_checkpoint_directory_is_one_line_for_a_fresh_run(tmp_path, tmpfs):
    read_only(tmpfs(tmp_path / "ro"))
    assert one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ro/ck")) == (
        "error: the checkpoint directory ro/ck (--checkpoint.dirpath) cannot be written in (Read-only file system): "
        "give a directory this run may write in")


def test_a_read_only_checkpoint_directory_is_one_line_for_a_resume(tmp_path, tmpfs):
    tmpfs(tmp_path / "ro", size="2m")
    first = fit_here(tmp_path, "--checkpoint.dirpath", "ro/ck")
    assert first.returncode == 0, first.stderr[-3000:]
    read_only(tmp_path / "ro")
    line = one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "ro/ck", "--ckpt_path", "last",
                                   "--trainer.max_steps", "4"))
    assert line.startswith("error: the checkpoint directory ro/ck (--checkpoint.dirpath) cannot be written in")
    assert torch.load(tmp_path / "ro" / "ck" / "last.ckpt", weights_only=True)["global_step"] == 2


LOG_PLACES = {
    "default_root_dir": ("--trainer.default_root_dir", "full"),
    "logger_save_dir": ("--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                        "--trainer.logger.save_dir", "full"),
}


@pytest.mark.parametrize(("place", "leave"), [("default_root_dir", 0), ("default_root_dir", 8000),
                                              ("logger_save_dir", 0), ("working_directory", 0)])
def test_a_full_log_directory_is_one_line(tmp_path, tmpfs, place, leave):
    """Full, or with room for the first small files only (config.yaml, the TensorBoard header)."""
    full = tmpfs(tmp_path / "full")
    fill(full, leave)
    if place == "working_directory":  # lightning_logs/ in the working directory, on the full disk
        work, flags = full, ["--checkpoint.dirpath", str(tmp_path / "ck"), "--data.input_txt", str(tmp_path / "c")]
        (tmp_path / "c").write_text(TINY_TEXT)
        proc = run([str(ROOT / "train.py"), "fit", "--config", DEBUG, "--data.url", "null", *FAST, *flags], work)
    else:
        proc = fit_here(tmp_path, *LOG_PLACES[place], "--checkpoint.dirpath", "ck")
    line = one_line_error(proc)
    assert line.startswith("error: cannot write the run's logs or checkpoints (No space left on device): "
                           "free some space, or give the run another directory (--trainer.default_root_dir")
    assert not (tmp_path / "ck").exists()  # the lock's directory, made for nothing, is gone


# ---- where an empty or null checkpoint directory leads -----------------------------------------------------

def test_an_empty_checkpoint_directory_is_refused(tmp_path):
    assert one_line_error(fit_here(tmp_path, "--checkpoint.dirpath", "")) == (
        'error: a checkpoint directory is empty (--checkpoint.dirpath "" or a checkpoint callback\'s dirpath in the '
        "config): give a directory, . for the working directory")
    assert not list(tmp_path.glob("*.ckpt"))


def test_an_empty_dirpath_in_a_configs_own_callback_is_refused(tmp_path):
    (tmp_path / "own.yaml").write_text("trainer:\n  callbacks:\n"
                                       "    - class_path: charrnn.callbacks.StopCheckpoint\n"
                                       "      init_args:\n        dirpath: ''\n")
    line = one_line_error(fit_here(tmp_path, "--config", "own.yaml"))
    assert line.startswith("error: a checkpoint directory is empty")


def test_a_null_checkpoint_directory_is_the_log_versions(tmp_path):
    proc = fit_here(tmp_path, "--checkpoint.dirpath", "null")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
