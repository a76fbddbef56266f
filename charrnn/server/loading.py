"""The model the server answers with, loaded by file type (only training checkpoints so far)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.checkpoint import CheckpointError, load_model
from charrnn.net import CharRNNNet
from charrnn.vocab import Vocab

Loader = Callable[[Path, torch.device], tuple[CharRNNNet, Vocab]]

# One loader per file suffix; exported weights get their own entry here.
LOADERS: dict[str, Loader] = {".ckpt": load_model}


@dataclass(frozen=True)
class ServedModel:
    """A network in eval mode with its vocabulary; shared read-only by all requests."""

    net: CharRNNNet
    vocab: Vocab
    source: str

    def describe(self) -> dict[str, object]:
        rnn = self.net.rnn
        return {
            "source": self.source,
            "model_type": type(rnn).__name__.lower(),
            "num_layers": rnn.num_layers,
            "rnn_size": rnn.hidden_size,
            "vocab_size": len(self.vocab),
            "byte_level": self.vocab.byte_level,
            "has_uppercase": any(t != t.lower() for t in self.vocab.tokens),
        }


def load_served_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ServedModel:
    """Loads ``path`` with the loader for its suffix.

    Raises:
        CheckpointError: the file is missing, of an unknown type, or unusable; the message names it.
    """
    path = Path(path)
    loader = LOADERS.get(path.suffix)
    if loader is None:
        raise CheckpointError(f"{path}: unknown model file type {path.suffix!r}; "
                              f"give one of {', '.join(sorted(LOADERS))} (a training checkpoint)")
    net, vocab = loader(path, torch.device(device))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return ServedModel(net, vocab, str(path))
