"""Reading models safely: Lightning checkpoints (weights_only, no pickle code runs), exports and torch-rnn's.

Three forms hold a model:

- a training checkpoint (``.ckpt``, written by Lightning): weights, hyperparameters with the
  vocabulary, and the state needed to resume;
- an export (``model.safetensors``, written by ``python -m charrnn.export``): the weights, with the
  architecture and vocabulary in the file's metadata. No pickle at all.
- a torch-rnn checkpoint (``.t7``, written by torch-rnn's ``train.lua``): its ``nn.LanguageModel``
  read as data (:mod:`charrnn.ckpt.torch7`) and mapped onto our network (:mod:`charrnn.ckpt.torch_rnn`).

Each is read once, and checked as strictly whatever reads it: the vocabulary, the
:class:`~charrnn.net_spec.Architecture` and the weights' names, shapes and dtypes must fit together
(:func:`~charrnn.net_spec.check_weights`, before a network is built) and the weights must be finite.
:func:`read_model` takes any of them (an export may also be given by its directory) and returns a
:class:`LoadedModel`; :func:`read_checkpoint` returns a training checkpoint's dictionary itself, which
resuming hands to Lightning.

A checkpoint records its architecture under ``architecture`` (:data:`ARCHITECTURE_KEY`) beside the weights;
one written before that key existed has it only among the hyperparameters, where it is read from then.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from charrnn.ckpt import torch7, torch_rnn
from charrnn.errors import UsageError
from charrnn.files import check_readable, empty_file
from charrnn.net import CharRNNNet
from charrnn.net_spec import ARCHITECTURE_FIELDS, Architecture, check_weights
from charrnn.vocab import Vocab

ARCHITECTURE_KEY = "architecture"  # a checkpoint's Architecture (``asdict``), beside its state_dict
RESUMABLE_KEYS = ("loops", "optimizer_states", "global_step")  # what a checkpoint needs to resume training
EXPORT_FORMAT = "charrnn-export-1"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_VOCAB = "vocab.json"
# safetensors' dtype names; others (integers, bool) are refused by check_weights under their own name.
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class CheckpointError(UsageError):
    """A checkpoint that cannot be used; the message names the file."""


def _torch_load(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint onto the CPU, with errors that name the file.

    ``weights_only=True`` is passed explicitly, so no environment variable can turn it off: a file
    holding code (a pickled object other than tensors and plain containers) is refused unexecuted.
    """
    if check_readable(path, "checkpoint", CheckpointError).st_size == 0:
        if (why := empty_file(path)) != "is empty":
            raise CheckpointError(f"checkpoint {path} {why}; give a checkpoint file")
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
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


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a file: the network (in eval mode), its vocabulary and architecture, and for a
    torch-rnn checkpoint (or an export of one) what its training recorded (``origin``: iterations, last
    validation loss and a one-line ``summary``, for messages and the server's description)."""

    net: CharRNNNet
    vocab: Vocab
    architecture: Architecture
    origin: dict[str, Any] | None = None


class _Parts(NamedTuple):
    """What a file holds, checked to fit together; the network is not built yet."""

    vocab: Vocab
    architecture: Architecture
    weights: dict[str, torch.Tensor]
    origin: dict[str, Any] | None


def read_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """The model in a training checkpoint, an export (``model.safetensors`` or its directory) or a torch-rnn
    ``.t7``, on ``device``, reading the file once.

    Raises:
        CheckpointError: the file is missing, damaged, unsafe or of no usable model; the message names it.
    """
    parts = _read(path)
    what = f"{'export' if export_path(path) is not None else 'checkpoint'} {export_path(path) or path}"
    try:
        net = CharRNNNet(parts.architecture)
        net.load_state_dict(parts.weights)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: weights do not match its architecture: {e}") from None
    return LoadedModel(net.to(device).eval(), parts.vocab, parts.architecture, parts.origin)


def read_vocab(path: str | os.PathLike) -> Vocab:
    """The vocabulary of a training checkpoint, an export, a torch-rnn .t7, or a torch-rnn/charrnn vocabulary
    JSON (the model files checked as :func:`read_model` checks them)."""
    if Path(path).suffix == ".json":
        return Vocab.load(path)
    return _read(path).vocab


def read_checkpoint(path: str | os.PathLike, resuming: bool = False) -> dict[str, Any]:
    """A charrnn training checkpoint's dictionary, loaded safely (``weights_only``) and checked as
    :func:`read_model` checks it; with ``resuming``, it must also hold what training continues from (a
    weights-only checkpoint does not)."""
    ckpt, _ = _checkpoint(path)
    missing = [k for k in RESUMABLE_KEYS if k not in ckpt] if resuming else []
    if missing:
        raise CheckpointError(f"checkpoint {path} cannot resume training: it has no {', '.join(missing)} "
                              "(a weights-only checkpoint? start a new run from it with --model.init_from)")
    return ckpt


def _read(path: str | os.PathLike) -> _Parts:
    _check_exists(path)
    if (file := export_path(path)) is not None:
        return _read_export(file)
    if torch7.is_torch7(path):
        return _read_torch7(path)
    return _checkpoint(path)[1]


def _checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], _Parts]:
    """A training checkpoint's dictionary, and its parts checked to fit together."""
    _check_exists(path)
    if (file := export_path(path)) is not None and file.is_file():
        raise CheckpointError(f"checkpoint {path} is an export (weights only), not a training checkpoint: "
                              "--ckpt_path needs a training checkpoint (.ckpt) to resume from; --model.init_from "
                              f"takes an export, to start a new run from its weights")
    if torch7.is_torch7(path):
        raise CheckpointError(f"checkpoint {path} is a torch-rnn checkpoint: it holds weights, not a Lightning "
                              "training state to resume; start a run from it with --model.init_from")
    ckpt = _torch_load(Path(path))
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        raise CheckpointError(f"checkpoint {path} is not a charrnn training checkpoint "
                              "(no state_dict/hyper_parameters)")
    hp = ckpt["hyper_parameters"]
    if "vocab" not in hp:
        raise CheckpointError(f"checkpoint {path} has no vocabulary in its hyperparameters")
    vocab = _vocab(path, hp["vocab"])
    what = f"checkpoint {path}"
    saved = ckpt.get(ARCHITECTURE_KEY, hp)
    architecture = _architecture(what, saved, len(vocab))
    differ = [f"{k} {hp[k]!r} there, {getattr(architecture, k)!r} in its architecture" for k in ARCHITECTURE_FIELDS
              if saved is not hp and k in hp and hp[k] != getattr(architecture, k)]
    if differ:
        raise CheckpointError(f"{what}: its hyperparameters contradict its saved architecture ({'; '.join(differ)}); "
                              "the file is damaged")
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()
               if isinstance(k, str) and k.startswith("net.")}
    _check(what, architecture, weights)
    return ckpt, _Parts(vocab, architecture, weights, None)


def _architecture(what: str, saved: Any, vocab_size: int) -> Architecture:
    try:
        return Architecture.from_fields(saved, vocab_size)
    except ValueError as e:
        raise CheckpointError(f"{what}: {e}") from None


def _vocab(path: str | os.PathLike, tokens: Any) -> Vocab:
    if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"checkpoint {path}: its vocabulary is not a list of tokens")
    try:
        return Vocab(tokens)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its vocabulary is not valid: {e}") from None


def _check(what: str, architecture: Architecture, weights: dict[str, Any]) -> None:
    """:func:`check_weights` of tensors, or of the (shape, dtype) pairs an export's header gives."""
    try:
        stored = {}
        for k, v in weights.items():
            if not isinstance(v, torch.Tensor | _Header):
                raise ValueError(f"its weight {k} is a {type(v).__name__}, not a tensor")
            stored[k] = (tuple(v.shape), v.dtype)
        check_weights(architecture, stored)
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


def export_path(path: str | os.PathLike) -> Path | None:
    """The ``model.safetensors`` that ``path`` names (the file or its directory), or None if it is no export."""
    if not os.fspath(path):
        raise CheckpointError("the path is empty; give a checkpoint (.ckpt) or an export")
    path = Path(path)
    if path.is_dir():
        return path / EXPORT_WEIGHTS
    return path if path.suffix == ".safetensors" else None


def _read_export(file: Path) -> _Parts:
    """Export ``file``: its metadata checked to hold what a charrnn export holds, the weights' shapes and
    dtypes checked from the header, then the weights read, all through one opening of the file."""
    from safetensors import SafetensorError, safe_open

    if file.parent.is_dir() and not file.exists() and file.name == EXPORT_WEIGHTS:
        raise CheckpointError(f"checkpoint {file.parent} is a directory with no {EXPORT_WEIGHTS}: give a checkpoint "
                              "file (.ckpt, .t7) or an export's directory (write one with python -m charrnn.export)")
    check_readable(file, "export", CheckpointError)
    what = f"export {file}"
    try:
        with safe_open(file, framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != EXPORT_FORMAT:
                raise CheckpointError(f"{what} is not a charrnn export (metadata format {meta.get('format')!r}, "
                                      f"expected {EXPORT_FORMAT!r})")
            try:
                vocab = Vocab(json.loads(meta["vocab"]))
                saved = json.loads(meta["architecture"])
                if not isinstance(saved, dict):
                    raise ValueError("architecture is not a JSON object")
                origin = json.loads(meta["origin"]) if "origin" in meta else None
            except (KeyError, ValueError, TypeError, RecursionError) as e:
                raise CheckpointError(f"{what}: its metadata has no readable vocabulary/architecture ({e})") from None
            architecture = _architecture(what, saved, len(vocab))  # an export before vocab_size was saved lacks it
            slices = {k: f.get_slice(k) for k in f.keys()}  # shapes and dtypes from the header; no weights read
            _check(what, architecture, {k: _Header(tuple(t.get_shape()), _SAFETENSORS_DTYPES.get(t.get_dtype(),
                                                                                                 t.get_dtype()))
                                        for k, t in slices.items()})
            weights = {k: f.get_tensor(k) for k in slices}
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{what} is damaged or not a safetensors file: {e}") from None
    _check(what, architecture, weights)
    return _Parts(vocab, architecture, weights, origin)


def _read_torch7(path: str | os.PathLike) -> _Parts:
    """A torch-rnn ``.t7`` checkpoint, mapped onto CharRNNNet (parsed as data: nothing in it runs)."""
    try:
        t7 = torch_rnn.read(path)
    except torch7.Torch7Error as e:
        sep = " " if str(e).startswith(("is ", "does ", "holds ")) else ": "
        raise CheckpointError(f"checkpoint {path}{sep}{e}") from None
    _check(f"checkpoint {path}", t7.architecture, t7.weights)
    return _Parts(t7.vocab, t7.architecture, t7.weights, {**t7.origin, "summary": t7.describe()})
