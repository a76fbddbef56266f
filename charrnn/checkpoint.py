"""Loading a model and its vocabulary from a Lightning checkpoint, safely (no pickle code runs)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from charrnn.net import CharRNNNet
from charrnn.vocab import Vocab

NET_ARGS = ("model_type", "wordvec_size", "rnn_size", "num_layers", "dropout")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors that name the file and say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path} was refused: it holds objects that are not plain data "
                              f"(safe loading only accepts tensors and containers): {str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a charrnn training checkpoint (no state_dict/hyper_parameters)")
    return ckpt


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[CharRNNNet, Vocab]:
    """The network (in eval mode, on ``device``) and vocabulary of a training checkpoint."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    if "vocab" not in hp:
        raise CheckpointError(f"checkpoint {path} has no vocabulary in its hyperparameters")
    vocab = Vocab(hp["vocab"])
    net = CharRNNNet(len(vocab), **{k: hp[k] for k in NET_ARGS if k in hp})
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: weights do not match its hyperparameters: {e}") from None
    return net.to(device).eval(), vocab
