"""A stop asked during a long step (a text sample, a validation) is honoured within seconds: the run saves
interrupted.ckpt as a stop between two training steps does, exits with 143, and resumes from there. Real
processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from charrnn.callbacks import stop_checkpoint
from tests.support.resume import fit_in, make_work, signal_at, start, state, train
from tests.support.stop import SlowValidation, TouchAt, entry

BOUND_S = 30  # from the signal to the process's end, on a loaded 2-core machine; it was never, before


def wait_for_file(path: Path, proc: subprocess.Popen, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> tuple[float, str, str]:
    """Sends SIGTERM; returns the seconds until the process ended, its stdout and its stderr."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=BOUND_S * 2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"SIGTERM ignored for {BOUND_S * 2} s")
    return time.monotonic() - sent, out, err


@pytest.mark.parametrize("max_steps", [30, 2], ids=["mid-run", "final-sample"])
def test_sigterm_during_a_long_text_sample_stops_within_seconds_and_saves(tmp_path, max_steps):
    sampling = tmp_path / "sampling"
    work = make_work(tmp_path / "work", every=100, extra_callbacks=entry(TouchAt, path=sampling, step=2))
    proc = start(work, "--samples.every_n_steps", "2", "--samples.length", "1000000000",
                 "--trainer.max_steps", str(max_steps))
    wait_for_file(sampling, proc)
    time.sleep(1.0)  # well into the billion characters
    took, out, err = stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < BOUND_S, f"{took:.1f} s"
    assert "----- sample at step 2 -----" in out and "characters: a stop was asked]" in out
    assert err.strip().splitlines()[-1] == "Stopped by SIGTERM. Continue with the same command and --ckpt_path last"
    saved = state(work / "ckpt" / "interrupted.ckpt")
    assert saved["global_step"] == 2
    if max_steps == 2:
        return  # the run had ended: interrupted.ckpt holds its last step
    again = train(work, "--ckpt_path", "last", "--trainer.max_steps", "4", "--samples.every_n_steps", "0")
    assert "Resuming from ckpt/interrupted.ckpt (global step 2)" in again.stdout + again.stderr
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 4


def test_sigterm_during_validation_stops_after_the_current_batch_and_resumes(tmp_path):
    batches = tmp_path / "validation.txt"
    work = make_work(tmp_path / "work", every=100, extra_callbacks=entry(SlowValidation, path=batches, pause=3))
    proc = start(work, "--samples.every_n_steps", "0", "--trainer.limit_val_batches", "3")
    wait_for_file(batches, proc)  # the first of three validation batches after step 10 has run
    took, _, err = stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < BOUND_S, f"{took:.1f} s"
    assert batches.read_text() == "validation batch after step 10\n"  # the two others never ran
    assert state(work / "ckpt" / "interrupted.ckpt")["global_step"] == 10
    batches.unlink()
    again = train(work, "--ckpt_path", "last", "--trainer.max_steps", "12", "--samples.every_n_steps", "0",
                  "--trainer.limit_val_batches", "3")
    assert "Resuming from ckpt/interrupted.ckpt (global step 10)" in again.stdout + again.stderr
    assert state(work / "ckpt" / "last.ckpt")["global_step"] == 12


def test_a_signal_added_to_the_stop_signals_stops_as_sigterm_does(tmp_path, monkeypatch, capsys):
    """What the stop signals are is one tuple: adding one (here SIGINT) is all it takes for it to save
    interrupted.ckpt after the current step instead of striking in the middle of it."""
    monkeypatch.setattr(stop_checkpoint, "STOP_SIGNALS", (signal.SIGTERM, signal.SIGINT))
    work = make_work(tmp_path / "work", every=100, extra_callbacks=signal_at(3, signal.SIGINT))
    with pytest.raises(SystemExit) as exit_:
        fit_in(work, "--samples.every_n_steps", "0")
    assert exit_.value.code == 128 + signal.SIGTERM
    assert state(work / "ckpt" / "interrupted.ckpt")["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back after the run
