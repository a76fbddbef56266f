"""Reading TensorBoard event files back: scalars and text, for plots, reports and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@dataclass(frozen=True)
class Point:
    step: int
    wall_time: float
    value: float


def _load(logdir: str | os.PathLike) -> EventAccumulator:
    if not os.path.isdir(logdir):
        what = "is not a directory" if os.path.lexists(logdir) else "does not exist"
        raise FileNotFoundError(f"log directory {logdir} {what} (expected lightning_logs/version_N)")
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[Point]]:
    """Every scalar series in ``logdir``, by tag (``train/loss``, ``val/loss``, ...)."""
    acc = _load(logdir)
    return {tag: [Point(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def first_wall_time(logdir: str | os.PathLike) -> float:
    """When the event file was opened (Unix time): Lightning opens it just before the sanity check and
    the first training step, after the data is prepared; a base for "validation loss after t seconds"."""
    return _load(logdir).FirstEventTimestamp()


def read_texts(logdir: str | os.PathLike, tag: str = "samples") -> list[tuple[int, str]]:
    """Text summaries (e.g. the training samples) as (step, text)."""
    acc = _load(logdir)
    tags = [t for t in acc.Tags().get("tensors", []) if t.startswith(tag)]
    out = []
    for t in tags:
        for e in acc.Tensors(t):
            out.append((e.step, b"".join(e.tensor_proto.string_val).decode("utf-8")))
    return sorted(out)
