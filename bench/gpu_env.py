"""The machine bench/gpu_check.py ran on: GPU, driver, CPU, and the versions that matter."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def environment() -> dict:
    """Python, torch, CUDA, cuDNN, lightning and jsonargparse versions, the CPU, and with CUDA the GPU
    (name, memory, compute capability) and its driver."""
    import lightning
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(), "cpu": _cpu_name(),
           "commit": _git_commit()}
    try:
        import jsonargparse

        env["jsonargparse"] = jsonargparse.__version__
    except ImportError:
        env["jsonargparse"] = None
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", driver=_driver())
    return env


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None
