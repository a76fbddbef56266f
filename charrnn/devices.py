"""The ``--device`` flag of sample.py and the server: a device this machine has, or an error naming it."""

from __future__ import annotations

import torch


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, checked to exist here.

    Raises:
        ValueError: a message starting ``device TEXT:`` that says what to give instead.
    """
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {text}: not a device; give cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {text}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise ValueError(f"device {text}: CUDA is not available on this machine; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    return device

