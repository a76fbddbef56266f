"""Reading models safely: Lightning checkpoints (weights_only, no pickle code runs), exports and torch-rnn's.

Three forms hold a model:

- a training checkpoint (``.ckpt``, written by Lightning): weights, hyperparameters with the
  vocabulary, and the state needed to resume;
- an export (``model.safetensors``, written by ``python -m charrnn.export``): the weights, with the
  architecture and vocabulary in the file's metadata. No pickle at all.
- a torch-rnn checkpoint (``.t7``, written by torch-rnn's ``train.lua``): its ``nn.LanguageModel``
  read as data (:mod:`charrnn.ckpt.torch7`) and mapped onto our network (:mod:`charrnn.ckpt.torch_rnn`).

:func:`load_model` takes any of them (an export may also be given by its directory).
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from charrnn.ckpt import torch7, torch_rnn
from charrnn.errors import UsageError
from charrnn.files import check_readable, empty_file
from charrnn.net import CharRNNNet
from charrnn.net_spec import check_weights
from charrnn.vocab import Vocab

# Hyperparameters that shape the network (everything CharRNNNet takes but the vocabulary size).
NET_ARGS = tuple(inspect.signature(CharRNNNet).parameters)[1:]
EXPORT_FORMAT = "charrnn-export-1"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_VOCAB = "vocab.json"
# safetensors' dtype names; others (integers, bool) are refused by check_weights under their own name.
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class CheckpointError(UsageError):
    """A checkpoint that cannot be used; the message names the file."""


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of any checkpoint, with errors that name the file.

    ``weights_only=True`` is passed explicitly, so no environment variable can turn it off: a file
    holding code (a pickled object other than tensors and plain containers) is refused unexecuted.
    """
    path = Path(path)
    if check_readable(path, "checkpoint", CheckpointError).st_size == 0:
        if (why := empty_file(path)) != "is empty":
            raise CheckpointError(f"checkpoint {path} {why}; give a checkpoint file")
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path} was refused: safe loading (weights_only) met something other "
                              "than tensors and plain containers, so the file is damaged or holds code "
                              f"({torch_reason(e)}); nothing in it was run. Use a checkpoint written by charrnn"
                              ) from None
    except KeyError:  # the pickle reader met an opcode it does not know: the bytes are no pickle at all
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)"
                              ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged (truncated?) or not a PyTorch checkpoint: "
                              f"{torch_reason(e)}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def torch_reason(e: BaseException) -> str:
    """What torch's error ``e`` says about the file, without its advice to load it with ``weights_only=False``
    (which would run any code the file holds) or to file an issue."""
    advice = ("weights only load failed", "weights_only", "please file an issue", "check the documentation",
              "arbitrary code", "trusted source")
    lines = [line.strip() for line in str(e).splitlines()]
    kept = [line for line in lines if line and not any(a in line.lower() for a in advice)]
    return " ".join(kept).removeprefix("WeightsUnpickler error:").strip() or type(e).__name__


def _check_exists(path: str | os.PathLike) -> None:
    """Refuses a path no model can be read from (missing, a pipe, a device, ...) before anything opens it;
    a directory passes (an export's)."""
    check_readable(path, "checkpoint", CheckpointError, directory_ok=True)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A charrnn training checkpoint, loaded safely (see :func:`load_checkpoint_file`), whose vocabulary,
    architecture and weights are checked to fit together (:func:`charrnn.net_spec.check_weights`)."""
    _check_exists(path)
    if (file := export_path(path)) is not None and file.is_file():
        raise CheckpointError(f"checkpoint {path} is an export (weights only), not a training checkpoint: "
                              "--ckpt_path needs a training checkpoint (.ckpt) to resume from; --model.init_from "
                              f"takes an export, to start a new run from its weights")
    if torch7.is_torch7(path):
        raise CheckpointError(f"checkpoint {path} is a torch-rnn checkpoint: it holds weights, not a Lightning "
                              "training state to resume; start a run from it with --model.init_from")
    ckpt = load_checkpoint_file(path, map_location)
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        raise CheckpointError(f"checkpoint {path} is not a charrnn training checkpoint "
                              "(no state_dict/hyper_parameters)")
    hp = ckpt["hyper_parameters"]
    if "vocab" not in hp:
        raise CheckpointError(f"checkpoint {path} has no vocabulary in its hyperparameters")
    vocab = _vocab(path, hp["vocab"])
    _check(f"checkpoint {path}", len(vocab), hp, {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()
                                                  if isinstance(k, str) and k.startswith("net.")})
    return ckpt


def _vocab(path: str | os.PathLike, tokens: Any) -> Vocab:
    if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"checkpoint {path}: its vocabulary is not a list of tokens")
    try:
        return Vocab(tokens)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its vocabulary is not valid: {e}") from None


def _check(what: str, vocab_size: int, args: dict[str, Any], weights: dict[str, Any]) -> None:
    """:func:`check_weights` of tensors, or of the (shape, dtype) pairs an export's header gives."""
    try:
        stored = {}
        for k, v in weights.items():
            if not isinstance(v, torch.Tensor | _Header):
                raise ValueError(f"its weight {k} is a {type(v).__name__}, not a tensor")
            stored[k] = (tuple(v.shape), v.dtype)
        check_weights(vocab_size, args, stored)
        bad = [k for k, v in weights.items() if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f"weight {bad[0]} holds NaN or infinite values (training diverged, or the file is "
                             "damaged); use an earlier checkpoint")
    except ValueError as e:
        raise CheckpointError(f"{what}: {e}") from None


class _Header(NamedTuple):
    """A tensor's shape and dtype as an export's header gives them (nothing is read)."""

    shape: tuple[int, ...]
    dtype: Any


def _build(what: str, vocab: Vocab, net_args: dict[str, Any], weights: dict[str, torch.Tensor]) -> CharRNNNet:
    """The network of weights checked by :func:`_check` (an export's by their header: their values here)."""
    _check(what, len(vocab), net_args, weights)
    try:
        net = CharRNNNet(len(vocab), **{k: net_args[k] for k in NET_ARGS if k in net_args})
        net.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: weights do not match its architecture: {e}") from None
    return net


def export_path(path: str | os.PathLike) -> Path | None:
    """The ``model.safetensors`` that ``path`` names (the file or its directory), or None if it is no export."""
    if not os.fspath(path):
        raise CheckpointError("the path is empty; give a checkpoint (.ckpt) or an export")
    path = Path(path)
    if path.is_dir():
        return path / EXPORT_WEIGHTS
    return path if path.suffix == ".safetensors" else None


def _export_metadata(file: Path) -> dict[str, str]:
    """The metadata of export ``file``, checked to hold what a charrnn export holds."""
    from safetensors import SafetensorError, safe_open

    if file.parent.is_dir() and not file.exists() and file.name == EXPORT_WEIGHTS:
        raise CheckpointError(f"checkpoint {file.parent} is a directory with no {EXPORT_WEIGHTS}: give a checkpoint "
                              "file (.ckpt, .t7) or an export's directory (write one with python -m charrnn.export)")
    check_readable(file, "export", CheckpointError)
    try:
        with safe_open(file, framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"export {file} is damaged or not a safetensors file: {e}") from None
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"export {file} is not a charrnn export (metadata format {meta.get('format')!r}, "
                              f"expected {EXPORT_FORMAT!r})")
    try:
        vocab = Vocab(json.loads(meta["vocab"]))
        architecture = json.loads(meta["architecture"])
        if not isinstance(architecture, dict):
            raise ValueError("architecture is not a JSON object")
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        raise CheckpointError(f"export {file}: its metadata has no readable vocabulary/architecture ({e})") from None
    with safe_open(file, framework="pt") as f:  # shapes and dtypes from the header; no weights are read
        slices = {k: f.get_slice(k) for k in f.keys()}
        stored = {k: _Header(tuple(t.get_shape()), _SAFETENSORS_DTYPES.get(t.get_dtype(), t.get_dtype()))
                  for k, t in slices.items()}
    _check(f"export {file}", len(vocab), architecture, stored)
    return meta


def load_export(path: str | os.PathLike) -> tuple[CharRNNNet, Vocab]:
    """The network and vocabulary of an export (``model.safetensors`` or its directory)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = export_path(path) or Path(path)
    meta = _export_metadata(file)
    try:
        weights = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"export {file} is damaged: {e}") from None
    vocab = Vocab(json.loads(meta["vocab"]))
    return _build(f"export {file}", vocab, json.loads(meta["architecture"]), weights), vocab


def load_torch7(path: str | os.PathLike) -> torch_rnn.TorchRNNModel:
    """A torch-rnn ``.t7`` checkpoint, mapped onto CharRNNNet (parsed as data: nothing in it runs)."""
    try:
        return torch_rnn.read(path)
    except torch7.Torch7Error as e:
        sep = " " if str(e).startswith(("is ", "does ", "holds ")) else ": "
        raise CheckpointError(f"checkpoint {path}{sep}{e}") from None


def origin(path: str | os.PathLike) -> dict[str, Any] | None:
    """What the training of a torch-rnn checkpoint recorded (iterations, last validation loss), for
    messages and the server's description (an export of one keeps it); None for any other model."""
    _check_exists(path)
    if (file := export_path(path)) is not None:
        meta = _export_metadata(file)
        return json.loads(meta["origin"]) if "origin" in meta else None
    if not torch7.is_torch7(path):
        return None
    t7 = load_torch7(path)
    return {**t7.origin, "summary": t7.describe()}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[CharRNNNet, Vocab]:
    """The network (in eval mode, on ``device``) and vocabulary of a training checkpoint, an export or a
    torch-rnn ``.t7``."""
    _check_exists(path)
    if export_path(path) is not None:
        net, vocab = load_export(path)
        return net.to(device).eval(), vocab
    if torch7.is_torch7(path):
        t7 = load_torch7(path)
        net = _build(f"checkpoint {path}", t7.vocab, t7.architecture, t7.weights)
        torch_rnn.forget()  # the network holds the weights now: no second copy stays in memory
        return net.to(device).eval(), t7.vocab
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    vocab = Vocab(hp["vocab"])
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return _build(f"checkpoint {path}", vocab, hp, weights).to(device).eval(), vocab


def model_spec(path: str | os.PathLike) -> tuple[dict[str, Any], Vocab]:
    """The architecture (the ``NET_ARGS`` it records) and vocabulary of a training checkpoint, an export or a
    torch-rnn ``.t7``."""
    _check_exists(path)
    if (file := export_path(path)) is not None:
        meta = _export_metadata(file)
        return json.loads(meta["architecture"]), Vocab(json.loads(meta["vocab"]))
    if torch7.is_torch7(path):
        t7 = load_torch7(path)
        return dict(t7.architecture), t7.vocab
    hp = read_checkpoint(path)["hyper_parameters"]
    return {k: hp[k] for k in NET_ARGS if k in hp}, Vocab(hp["vocab"])


def load_vocab(path: str | os.PathLike) -> Vocab:
    """The vocabulary of a training checkpoint, an export, a torch-rnn .t7, or a torch-rnn/charrnn vocabulary JSON."""
    if Path(path).suffix == ".json":
        return Vocab.load(path)
    return model_spec(path)[1]
