"""``--ckpt_path last`` when the file it prefers is older than another whole checkpoint: it resumes from
the newer one, and its warning gives the cause that fits the file it passed over."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from charrnn.ckpt import find
from charrnn.ckpt.load import read_checkpoint


def write(path: Path, step: int, mtime: float) -> Path:
    """A resumable checkpoint of a tiny model at ``step``, written at time ``mtime``."""
    from charrnn.model import CharRNN

    model = CharRNN(vocab=list("ab\n"), rnn_size=4, num_layers=1, wordvec_size=2)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": step,
                "loops": {}, "optimizer_states": []}, path)
    os.utime(path, (mtime, mtime))
    return path


def resolve(old: Path, newer: Path) -> tuple[Path, str]:
    files = sorted([old, newer], key=lambda p: p.stat().st_mtime, reverse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, _ = find.newer_than_last(old, read_checkpoint(old, resuming=True), files, {old}, fitting=True)
    return path, " ".join(str(w.message) for w in caught)


def test_a_stale_stop_checkpoint_is_not_called_a_failed_save(tmp_path: Path) -> None:
    stop = write(tmp_path / "interrupted.ckpt", 13, 1_000)
    best = write(tmp_path / "best-step=20.ckpt", 20, 2_000)
    path, warned = resolve(stop, best)
    assert path == best
    assert "interrupted.ckpt (step 13) is older than" in warned and "left by an earlier stop" in warned
    assert "failed" not in warned


@pytest.mark.parametrize("name", ["last.ckpt", "last-v1.ckpt"])
def test_a_last_file_behind_a_newer_save_names_both_causes(tmp_path: Path, name: str) -> None:
    last = write(tmp_path / name, 5, 1_000)
    step = write(tmp_path / "step=10.ckpt", 10, 2_000)
    path, warned = resolve(last, step)
    assert path == step
    assert f"{name} (step 5) is older than" in warned and "failed" in warned and "ended before" in warned
