"""``train.py predict``: the per-stream losses of the test split, summed up on stdout and written to a CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from charrnn.atomic import atomic_write


def stream_means(batches: Sequence[Tensor]) -> Tensor:
    """Mean loss of each stream over the batches: ``(B,)`` from per-batch ``(B,)`` losses."""
    return torch.stack([b.float().cpu() for b in batches]).mean(dim=0)


def summary(batches: Sequence[Tensor], path: Path) -> str:
    """A few lines for the terminal: the overall loss, each stream's, and where the numbers are."""
    if not batches:
        return "predict: the test split gave no batch (is --data.test_frac 0?); nothing written"
    means = stream_means(batches)
    mean = float(means.mean())
    per_stream = " ".join(f"{float(x):.4f}" for x in means)
    return (f"predict: {len(batches)} batches x {means.numel()} streams of the test split, "
            f"mean loss {mean:.4f} nats/char ({mean / math.log(2):.4f} bits/char)\n"
            f"per stream (mean over batches): {per_stream}\n"
            f"every batch's per-stream loss: {path}")


def write_csv(batches: Sequence[Tensor], path: Path) -> None:
    """Rows ``batch,stream,loss`` (nats per character), written atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["batch", "stream", "loss"])
    for i, losses in enumerate(batches):
        writer.writerows((i, j, f"{float(x):.6f}") for j, x in enumerate(losses.float().cpu()))
    atomic_write(path, lambda f: f.write(out.getvalue().encode()))
