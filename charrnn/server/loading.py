"""The model the server answers with: whatever :func:`charrnn.ckpt.load.read_model` reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from charrnn.ckpt.load import read_model
from charrnn.net import CharRNNNet
from charrnn.vocab import Vocab


@dataclass(frozen=True)
class ServedModel:
    """A network in eval mode with its vocabulary; shared read-only by all requests."""

    net: CharRNNNet
    vocab: Vocab
    source: str
    origin: dict[str, Any] | None = None  # what a torch-rnn checkpoint's training recorded

    def describe(self) -> dict[str, object]:
        architecture = self.net.architecture
        described: dict[str, object] = {
            "model_type": architecture.model_type,
            "num_layers": architecture.num_layers,
            "rnn_size": architecture.rnn_size,
            "vocab_size": len(self.vocab),
            "byte_level": self.vocab.byte_level,
            "has_uppercase": any(t != t.lower() for t in self.vocab.tokens),
        }
        if self.origin is not None:
            described["origin"] = self.origin
        return described


def load_served_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ServedModel:
    """The model in ``path``, ready to be shared by concurrent requests.

    Raises:
        CheckpointError: the file is missing or unusable; the message names it.
    """
    model = read_model(path, torch.device(device))
    for p in model.net.parameters():
        p.requires_grad_(False)
    return ServedModel(model.net, model.vocab, str(path), model.origin)
