"""The one way tests run the project's commands in a fresh process (``python ARGS``), and free ports.

Every command gets the same environment: one thread per process (tiny models run several times faster
without thread contention, and tests run side by side on few cores), and the repository on PYTHONPATH
(the test-only callbacks in tests/support/ that configs name must import in every process). Every
command runs under a timeout, and a process past it is killed and reaped, never left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.paths import ROOT

TIMEOUT = 300  # seconds: a command of a test on a loaded 2-core machine ends well within it

# The switches that give this process an AVX2-only CPU's kernels on a bigger one (no AVX-512, so no native
# bfloat16 and no VNNI): oneDNN's ISA cap and ATen's vector width. tests/test_kernel_choice.py checks that
# they do; on an AVX2-only CPU they change nothing.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with one thread and the repository on PYTHONPATH, then ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(extra or {})}


def start(args: list[str], cwd: Path, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Starts ``python ARGS`` in ``cwd``, its output captured as text."""
    return subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(extra_env))


def finish(proc: subprocess.Popen, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Waits for ``proc``; with ``check``, fails the test with its stderr unless it exited 0."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if check:
        assert proc.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(args: list[str], cwd: Path, timeout: float = TIMEOUT, extra_env: Mapping[str, str] | None = None,
        ) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in ``cwd`` to its end, whatever its exit status."""
    return finish(start(args, cwd, extra_env), check=False, timeout=timeout)


def run_ok(args: list[str], cwd: Path, timeout: float = TIMEOUT, extra_env: Mapping[str, str] | None = None,
           ) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in ``cwd`` and fails the test with its stderr unless it exits 0."""
    return finish(start(args, cwd, extra_env), check=True, timeout=timeout)


def free_port() -> int:
    """A loopback TCP port that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
