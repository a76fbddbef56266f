"""What tests share besides fixtures: the repository's root, a tiny corpus, running a command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS_NAME = "tiny-shakespeare.txt"

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 40


# The switches that give this process an AVX2-only CPU's kernels on a bigger one (no AVX-512, so no native
# bfloat16 and no VNNI): oneDNN's ISA cap and ATen's vector width. tests/test_kernel_choice.py checks that
# they do; on an AVX2-only CPU they change nothing.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def run_ok(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in ``cwd`` and fails the test with its stderr unless it exits 0."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
