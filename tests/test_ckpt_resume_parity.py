"""Exact resume: a run stopped at step j and resumed in a fresh `python train.py fit` process is
bit-identical to the run that never stopped — the same losses at every step and the same final
weights, optimizer, schedule, RNG and carried state (CPU). The checkpoints are written as every shipped
config writes them: the --checkpoint and --best_checkpoints groups (charrnn.callbacks.UpToDateCheckpoint)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from tests.support.processes import finish
from tests.support.resume import (
    STEPS_PER_EPOCH,
    losses,
    make_work,
    same_tensors,
    signal_at,
    start,
    state,
    train,
    val_losses,
)

K = 30
CASES = {  # j: the checkpoint the second process resumes from
    "mid-epoch": "step=7.ckpt",
    "at the end of an epoch": f"step={STEPS_PER_EPOCH}.ckpt",
    "a step save that waited for the validation of its step": "step=10.ckpt",  # as last.ckpt at such a step
    "saved by --best_checkpoints right after a validation": "val-step=20.ckpt",
}
CONTROL = "without the data position"
WORKERS = "mid-epoch with 2 data workers"  # they fetch ahead of training; the position must not follow them


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The uninterrupted run (also with data workers), each resumed run, and the negative control."""
    base = tmp_path_factory.mktemp("parity")
    whole, whole_workers = make_work(base / "uninterrupted"), make_work(base / "uninterrupted-with-workers")
    both = [start(whole), start(whole_workers, "--data.num_workers", "2")]
    for proc in both:
        finish(proc)
    # The control resumes mid-epoch from a checkpoint whose saved loader position was removed.
    ckpt = state(whole / "ckpt" / CASES["mid-epoch"])
    del ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    torch.save(ckpt, base / "no-position.ckpt")
    starts = {name: whole / "ckpt" / file for name, file in CASES.items()} | {CONTROL: base / "no-position.ckpt"}
    procs = {name: (make_work(base / name.replace(" ", "-")), path) for name, path in starts.items()}
    running = {name: start(work, "--ckpt_path", str(path)) for name, (work, path) in procs.items()}
    workers = make_work(base / "resumed-with-workers")
    running[WORKERS] = start(workers, "--ckpt_path", str(whole_workers / "ckpt" / CASES["mid-epoch"]),
                             "--data.num_workers", "2")
    for name, proc in running.items():
        assert "Resuming from" in finish(proc).stderr, name
    return ({"uninterrupted": whole, "uninterrupted with workers": whole_workers, WORKERS: workers}
            | {name: work for name, (work, _) in procs.items()})


def test_the_cases_are_what_they_claim(runs):
    ckpts = runs["uninterrupted"] / "ckpt"
    position = {name: state(ckpts / file)["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["next_batch"]
                for name, file in CASES.items()}
    assert 0 < position["mid-epoch"] < STEPS_PER_EPOCH
    assert position["at the end of an epoch"] == STEPS_PER_EPOCH
    assert state(ckpts / CASES["at the end of an epoch"])["epoch"] == 0
    waited = state(ckpts / CASES["a step save that waited for the validation of its step"])["callbacks"]
    assert sorted(Path(cb["best_model_path"]).name for cb in waited.values()) == ["step=10.ckpt", "val-step=10.ckpt"]
    assert set(val_losses(runs["uninterrupted"])) == {9, 19, 29}  # validations after steps 10, 20, 30
    assert state(ckpts / "last.ckpt")["global_step"] == K


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_is_bit_identical(runs, case):
    whole, resumed = runs["uninterrupted"], runs[case]
    j = state(whole / "ckpt" / CASES[case])["global_step"]
    expected, got = losses(whole), losses(resumed)
    assert sorted(got) == list(range(j, K))  # it trained steps j+1..K only (CSV steps count from 0)
    assert {s: expected[s] for s in got} == got
    assert all(val_losses(whole)[s] == v for s, v in val_losses(resumed).items())
    a, b = state(whole / "ckpt" / "last.ckpt"), state(resumed / "ckpt" / "last.ckpt")
    assert b["global_step"] == K and b["epoch"] == a["epoch"]
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "charrnn_resume"):
        assert same_tensors(a[key], b[key]), key


def test_data_workers_change_nothing(runs):
    """Workers prefetch batches; the saved position still counts only what training consumed."""
    whole = runs["uninterrupted"]
    expected = losses(whole)
    for name in ("uninterrupted with workers", WORKERS):
        got = losses(runs[name])
        assert got and got == {s: expected[s] for s in got}, name
        assert same_tensors(state(whole / "ckpt" / "last.ckpt")["state_dict"],
                            state(runs[name] / "ckpt" / "last.ckpt")["state_dict"]), name
    assert min(losses(runs[WORKERS])) == 7


def test_negative_control_resuming_at_the_wrong_data_differs(runs):
    """The same resume without the saved data position: the parity checks above must catch it."""
    whole, control = runs["uninterrupted"], runs[CONTROL]
    expected, got = losses(whole), losses(control)
    assert sorted(got) == list(range(7, K))
    assert got[7] != expected[7]
    a, b = state(whole / "ckpt" / "last.ckpt"), state(control / "ckpt" / "last.ckpt")
    assert b["global_step"] == K and not same_tensors(a["state_dict"], b["state_dict"])


def test_sigterm_then_sigkill_then_resume_gives_the_uninterrupted_run(runs, tmp_path):
    """Checkpoints every 5 steps. SIGTERM after step 13 writes interrupted.ckpt and exits non-zero;
    the resumed run is SIGKILLed after step 24 (last.ckpt is then step 20: less than one interval
    lost); `--ckpt_path last` takes the newest and finishes the run exactly as if never stopped."""
    work = make_work(tmp_path / "killed", every=5, extra_callbacks=signal_at(13, signal.SIGTERM))
    proc = train(work, check=False)
    assert proc.returncode == 128 + signal.SIGTERM and "Stopped by SIGTERM" in proc.stderr, proc.stderr[-3000:]
    ckpts = work / "ckpt"
    assert state(ckpts / "interrupted.ckpt")["global_step"] == 13 and state(ckpts / "last.ckpt")["global_step"] == 10

    make_work(work, every=5, extra_callbacks=signal_at(24, signal.SIGKILL))
    proc = train(work, "--ckpt_path", "last", check=False)
    assert proc.returncode == -signal.SIGKILL and "Resuming from ckpt/interrupted.ckpt" in proc.stderr
    assert state(ckpts / "last.ckpt")["global_step"] == 20
    assert not [p for p in ckpts.iterdir() if p.suffix == ".ckpt" and p.stat().st_size == 0]

    make_work(work, every=5)
    proc = train(work, "--ckpt_path", "last")
    assert "Resuming from ckpt/last.ckpt (global step 20)" in proc.stderr
    assert not (ckpts / "interrupted.ckpt").exists()  # a run that ends well removes it
    whole = runs["uninterrupted"]
    a, b = state(whole / "ckpt" / "last.ckpt"), state(ckpts / "last.ckpt")
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "charrnn_resume"):
        assert same_tensors(a[key], b[key]), key
    expected = losses(whole)
    assert {s: v for s, v in losses(work).items() if s >= 20} == {s: expected[s] for s in range(20, K)}
