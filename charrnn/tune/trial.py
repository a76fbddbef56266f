"""One trial: a real ``train.py fit`` in a child process, its validation losses read back from its TensorBoard
events as they are written (Lightning flushes them at each logging), each handed to Optuna's pruner.

The child is the CLI a user runs, unchanged: it gets its own memory (an out-of-memory kill ends the trial,
not the search), and stopping it is a signal. Reading the events needs no hook in the training code and
reads exactly what TensorBoard shows.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.events import read_scalars

POLL_S = 1.0
STOP_GRACE_S = 15.0
FIT = "from charrnn.cli import cli_main; cli_main()"  # what train.py runs


class TrialFailed(Exception):
    """The trial's training failed: the reason is one line (an error, a signal, a diverged loss)."""


class Stopped(Exception):
    """The callback asked to stop the trial (Optuna's pruner): the training was ended."""


@dataclass
class Outcome:
    """What a trial's run left: ``val`` holds (step, seconds since the start, val loss) per validation."""

    val: list[tuple[int, float, float]] = field(default_factory=list)
    chars_per_sec: float | None = None
    seconds: float = 0.0


def fit_command(configs: list[str], extra: list[str], flags: dict[str, object], max_steps: int, every: int,
                root: Path) -> list[str]:
    """The ``train.py fit`` command line of a trial: the user's configs and flags, the trial's settings, its
    step count, a validation every ``every`` steps, and neither checkpoints nor samples (a trial's result is
    its losses)."""
    cmd = [sys.executable, "-c", FIT, "fit"]
    for c in configs:
        cmd += ["--config", c]
    cmd += extra
    for flag, value in flags.items():
        cmd += [f"--{flag}", _text(value)]
    return cmd + ["--trainer.max_steps", str(max_steps), "--trainer.val_check_interval", str(every),
                  "--trainer.check_val_every_n_epoch", "null", "--trainer.enable_checkpointing", "false",
                  "--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false",
                  "--trainer.default_root_dir", str(root)]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the search's process ends, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: an orphaned trial ends at its own max_steps
        pass


def _logdir(root: Path) -> Path | None:
    versions = sorted((root / "lightning_logs").glob("version_*"))
    return versions[-1] if versions else None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def failure_reason(returncode: int, log: str) -> str:
    """One line saying why a child ``fit`` failed, from its exit status and the end of its output."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if returncode == -signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    for ln in reversed(lines):
        if ln.startswith("error:") or "out of memory" in ln.lower() or "MemoryError" in ln:
            return ln[:300]
    for ln in reversed(lines):  # a traceback's last line: "ValueError: ..."
        if ln.split(":", 1)[0].endswith(("Error", "Exception")):
            return ln[:300]
    return f"exit status {returncode}" + (f": {lines[-1][:300]}" if lines else "")


def run(cmd: list[str], root: Path, on_validation: Callable[[int, float], bool], timeout_s: float,
        out: Outcome) -> None:
    """Runs ``cmd`` (output to ``root/fit.log``), calling ``on_validation(k, loss)`` for the k-th validation
    (1, 2, ...) as it appears; a True answer stops the training (:class:`Stopped`). ``out`` is filled in as it
    goes, whatever the end.

    Raises:
        TrialFailed: the training exited with an error or a signal, its validation loss is not finite, or it
            ran longer than ``timeout_s``.
        Stopped: ``on_validation`` asked for it.
    """
    root.mkdir(parents=True, exist_ok=True)
    start, started = time.monotonic(), time.time()
    seen = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(root / "fit.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        try:
            while True:
                done = proc.poll() is not None
                logdir = _logdir(root)
                scalars = read_scalars(logdir) if logdir else {}
                points = scalars.get("val/loss", [])
                for k, p in enumerate(points[seen:], start=seen + 1):
                    seen = k
                    out.val.append((p.step, p.wall_time - started, p.value))  # seconds since the command started
                    if not math.isfinite(p.value):
                        raise TrialFailed(f"diverged: val/loss {p.value} at step {p.step}")
                    if on_validation(k, p.value):
                        raise Stopped(f"stopped by the pruner after validation {k} (val/loss {p.value:.4f})")
                rates = [p.value for p in scalars.get("train/chars_per_sec", [])]
                if rates:
                    out.chars_per_sec = statistics.median(rates[1:] or rates)  # the first window holds the warm-up
                if done:
                    break
                if time.monotonic() - start > timeout_s:
                    raise TrialFailed(f"still training after {timeout_s:.0f} s (the machine is much busier than "
                                      "when its step was timed)")
                time.sleep(POLL_S)
        finally:
            _stop(proc)
            out.seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise TrialFailed(failure_reason(proc.returncode, (root / "fit.log").read_text(errors="replace")[-20000:]))
    if not out.val:
        raise TrialFailed("the training ended without a validation (is the validation split empty?)")
