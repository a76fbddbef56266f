"""Loading a model and its vocabulary from a Lightning checkpoint, safely (weights_only, no pickle code runs)."""

from __future__ import annotations

import inspect
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from charrnn.net import CharRNNNet
from charrnn.vocab import Vocab

# Hyperparameters that shape the network (everything CharRNNNet takes but the vocabulary size).
NET_ARGS = tuple(inspect.signature(CharRNNNet).parameters)[1:]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of any checkpoint, with errors that name the file.

    ``weights_only=True`` is passed explicitly, so no environment variable can turn it off: a file
    holding code (a pickled object other than tensors and plain containers) is refused unexecuted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path} was refused: safe loading (weights_only) met something other "
                              "than tensors and plain containers, so the file is damaged or holds code: "
                              f"{str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is damaged (truncated?) or not a PyTorch checkpoint: {first}"
                              ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A charrnn training checkpoint, loaded safely (see :func:`load_checkpoint_file`)."""
    ckpt = load_checkpoint_file(path, map_location)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a charrnn training checkpoint "
                              "(no state_dict/hyper_parameters)")
    if "vocab" not in ckpt["hyper_parameters"]:
        raise CheckpointError(f"checkpoint {path} has no vocabulary in its hyperparameters")
    return ckpt


def _build(path: Path, vocab: Vocab, net_args: dict[str, Any], weights: dict[str, torch.Tensor]) -> CharRNNNet:
    try:
        net = CharRNNNet(len(vocab), **{k: net_args[k] for k in NET_ARGS if k in net_args})
        net.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not match its architecture: {e}") from None
    return net


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[CharRNNNet, Vocab]:
    """The network (in eval mode, on ``device``) and vocabulary of a training checkpoint."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    vocab = Vocab(hp["vocab"])
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return _build(Path(path), vocab, hp, weights).to(device).eval(), vocab


def model_spec(path: str | os.PathLike) -> tuple[dict[str, Any], Vocab]:
    """The architecture (the ``NET_ARGS`` it records) and vocabulary of a training checkpoint."""
    hp = read_checkpoint(path)["hyper_parameters"]
    return {k: hp[k] for k in NET_ARGS if k in hp}, Vocab(hp["vocab"])


def load_vocab(path: str | os.PathLike) -> Vocab:
    """The vocabulary of a training checkpoint or of a torch-rnn/charrnn vocabulary JSON."""
    if Path(path).suffix == ".json":
        return Vocab.load(path)
    return model_spec(path)[1]
