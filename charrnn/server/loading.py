"""The model the server answers with: whatever :func:`charrnn.ckpt.load.load_model` reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from charrnn.ckpt.load import load_model, origin
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
        # Read from the modules, so any layout of the network (fused layers or one module per layer) works.
        rnns = [m for m in self.net.modules() if isinstance(m, nn.RNNBase)]
        described: dict[str, object] = {
            "model_type": type(rnns[0]).__name__.lower() if rnns else "unknown",
            "num_layers": sum(m.num_layers for m in rnns),
            "rnn_size": rnns[0].hidden_size if rnns else 0,
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
    described = origin(path)  # before load_model, which lets the parsed file go
    net, vocab = load_model(path, torch.device(device))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return ServedModel(net, vocab, str(path), described)
