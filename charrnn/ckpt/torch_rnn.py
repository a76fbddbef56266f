"""torch-rnn checkpoints: ``nn.LanguageModel`` in a ``.t7`` mapped onto :class:`charrnn.net.CharRNNNet`.

torch-rnn's ``train.lua`` saves ``{model = nn.LanguageModel, opt = ..., i = ..., val_loss_history = ...}``.
The model's ``net`` is ``LookupTable -> (LSTM | VanillaRNN [-> View -> BatchNormalization -> View]
[-> Dropout]) x L -> View -> Linear -> View``, its vocabulary ``idx_to_token``.

- torch-rnn's LSTM keeps one ``weight`` of (D+H, 4H), input rows then hidden rows, and one ``bias``
  of 4H, gates in the order input, forget, output, candidate; PyTorch's LSTM wants (4H, D) and (4H, H)
  in the order input, forget, candidate, output. VanillaRNN is ``tanh(x Wx + h Wh + b)``, as ``nn.RNN``.
- ``-batchnorm 1`` puts a BatchNormalization after each recurrent layer. In evaluation it is a fixed
  affine map of that layer's output, which is folded into what reads the output next (the next
  layer's input weights, or the output layer): the network computes the same function without it.
- A Lua function where a weight should be is refused; anywhere else it is ignored (never run: see
  :mod:`charrnn.ckpt.torch7`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchfile
from torch import Tensor

from charrnn.ckpt.torch7 import Torch7Error, parse, typename, what
from charrnn.net_spec import Architecture
from charrnn.vocab import Vocab


def _field(module: Any, name: str, ndim: int | None = None) -> Any:
    value = module._obj.get(name.encode()) if isinstance(module._obj, dict) else None
    if ndim is not None:
        if isinstance(value, torchfile.LuaFunction):
            raise Torch7Error(f"{typename(module)}.{name} is a serialized Lua function, not a tensor (refused)")
        if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype.kind != "f":
            raise Torch7Error(f"{typename(module)}.{name} is not a {ndim}-D float tensor")
        return torch.from_numpy(value.astype(np.float64))
    return value


def _language_model(obj: Any) -> Any:
    """The nn.LanguageModel of a torch-rnn checkpoint table (or of a bare saved model)."""
    if isinstance(obj, dict) and b"protos" in obj:
        rnn = obj[b"protos"].get(b"rnn") if isinstance(obj[b"protos"], dict) else None
        raise Torch7Error(f"is a karpathy/char-rnn checkpoint (protos.rnn is {what(rnn)}, an nngraph network); "
                          "char-rnn models are not supported, only torch-rnn's nn.LanguageModel")
    model = obj.get(b"model") if isinstance(obj, dict) else obj
    if typename(model) != "nn.LanguageModel":
        found = what(model) if isinstance(obj, dict) and b"model" in obj else what(obj)
        raise Torch7Error(f"holds {found}, not a torch-rnn checkpoint (a table whose model is an nn.LanguageModel)")
    return model


_LSTM_ORDER = (0, 1, 3, 2)  # torch-rnn's gate blocks i, f, o, g -> PyTorch's i, f, g, o


def _recurrent(module: Any, layer: int, input_dim: int) -> tuple[str, int, dict[str, Tensor]]:
    kind = {"nn.LSTM": "lstm", "nn.VanillaRNN": "rnn"}[typename(module)]
    weight, bias = _field(module, "weight", 2), _field(module, "bias", 1)
    gates = 4 if kind == "lstm" else 1
    hidden = weight.size(1) // gates
    if weight.shape != (input_dim + hidden, gates * hidden) or bias.shape != (gates * hidden,):
        raise Torch7Error(f"layer {layer + 1} ({typename(module)}) has weight {tuple(weight.shape)} and bias "
                          f"{tuple(bias.shape)}; expected ({input_dim}+H, {gates}H) and ({gates}H)")
    w_ih, w_hh = weight[:input_dim].T, weight[input_dim:].T  # (gH, D), (gH, H)
    if kind == "lstm":
        order = torch.cat([torch.arange(b * hidden, (b + 1) * hidden) for b in _LSTM_ORDER])
        w_ih, w_hh, bias = w_ih[order], w_hh[order], bias[order]
    return kind, hidden, {f"weight_ih_l{layer}": w_ih, f"weight_hh_l{layer}": w_hh,
                          f"bias_ih_l{layer}": bias, f"bias_hh_l{layer}": torch.zeros_like(bias)}


def _batchnorm(module: Any, size: int) -> tuple[Tensor, Tensor]:
    """(scale, shift) of a BatchNormalization in evaluation mode: y = x * scale + shift."""
    mean = _field(module, "running_mean", 1)
    eps = float(_field(module, "eps") or 1e-5)
    if isinstance(_field(module, "running_var"), np.ndarray):
        inv_std = 1 / torch.sqrt(_field(module, "running_var", 1) + eps)
    else:  # before 2016 Torch7 kept the inverse standard deviation itself
        inv_std = _field(module, "running_std", 1)
    weight = _field(module, "weight", 1) if isinstance(_field(module, "weight"), np.ndarray) else torch.ones(size)
    bias = _field(module, "bias", 1) if isinstance(_field(module, "bias"), np.ndarray) else torch.zeros(size)
    if not mean.shape == inv_std.shape == weight.shape == bias.shape == (size,):
        raise Torch7Error(f"a BatchNormalization does not have {size} features")
    scale = weight * inv_std
    return scale, bias - mean * scale


def _fold(weight: Tensor, bias: Tensor, affine: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
    """``W (x * scale + shift) + b`` as ``W' x + b'``."""
    if affine is None:
        return weight, bias
    scale, shift = affine
    return weight * scale, bias + weight @ shift


def _map(model: Any) -> tuple[Architecture, list[str], dict[str, Tensor]]:
    net = _field(model, "net")
    modules = _field(net, "modules") if typename(net) == "nn.Sequential" else None
    if not isinstance(modules, list) or not modules:
        raise Torch7Error(f"its nn.LanguageModel's net is {what(net)}, not an nn.Sequential of modules")
    names = [typename(m) or what(m) for m in modules]
    layout = " -> ".join(names)
    if names[0] != "nn.LookupTable" or names[-3:] != ["nn.View", "nn.Linear", "nn.View"]:
        raise Torch7Error(f"its network is {layout}; torch-rnn's is LookupTable -> LSTM/VanillaRNN ... -> "
                          "View -> Linear -> View")
    embed = _field(modules[0], "weight", 2)
    weights: dict[str, Tensor] = {"embed.weight": embed}
    kinds, sizes, dropouts = set(), set(), set()
    pending: tuple[Tensor, Tensor] | None = None  # the batchnorm of the previous layer, to fold forward
    width, i, layer = embed.size(1), 1, 0
    while i < len(modules) - 3:
        name = names[i]
        if name not in ("nn.LSTM", "nn.VanillaRNN"):
            raise Torch7Error(f"its network is {layout}: {name} at position {i + 1} is not a torch-rnn layer "
                              "(LSTM, VanillaRNN, BatchNormalization, Dropout)")
        kind, hidden, params = _recurrent(modules[i], layer, width)
        params[f"weight_ih_l{layer}"], params[f"bias_ih_l{layer}"] = _fold(
            params[f"weight_ih_l{layer}"], params[f"bias_ih_l{layer}"], pending)
        weights.update({f"rnn.{k}": v for k, v in params.items()})
        kinds.add(kind)
        sizes.add(hidden)
        pending, width, layer, i = None, hidden, layer + 1, i + 1
        if names[i:i + 3] == ["nn.View", "nn.BatchNormalization", "nn.View"] and i + 3 <= len(modules) - 3:
            pending = _batchnorm(modules[i + 1], hidden)
            i += 3
        if names[i] == "nn.Dropout":
            dropouts.add(float(_field(modules[i], "p") or 0.0))
            i += 1
    if layer == 0:
        raise Torch7Error(f"its network is {layout}: no recurrent layer")
    if len(kinds) > 1 or len(sizes) > 1 or len(dropouts) > 1:
        raise Torch7Error(f"its layers differ in type, size or dropout ({layout}); charrnn's network has one of each")
    head_w, head_b = _fold(_field(modules[-2], "weight", 2), _field(modules[-2], "bias", 1), pending)
    weights.update({"head.weight": head_w, "head.bias": head_b})
    vocab = _tokens(model, embed.size(0))
    if head_w.shape != (len(vocab), width):
        raise Torch7Error(f"its output layer is {tuple(head_w.shape)}, expected ({len(vocab)}, {width})")
    try:
        architecture = Architecture(len(vocab), kinds.pop(), embed.size(1), sizes.pop(), layer,
                                    dropouts.pop() if dropouts else 0.0)
    except ValueError as e:
        raise Torch7Error(f"its network is not one charrnn builds: {e}") from None
    return architecture, vocab, {k: v.float().contiguous() for k, v in weights.items()}


def _tokens(model: Any, size: int) -> list[str]:
    """The model's ``idx_to_token`` (1-based in Lua), as text."""
    table = _field(model, "idx_to_token")
    if isinstance(table, dict):  # not 1..V without gaps: torchfile leaves it a table
        table = [table.get(i) for i in range(1, len(table) + 1)]
    if not isinstance(table, list) or len(table) != size or not all(isinstance(t, bytes) for t in table):
        raise Torch7Error(f"its idx_to_token is not {size} strings indexed 1..{size} (the embedding's rows)")
    try:
        return [t.decode("utf-8") for t in table]
    except UnicodeDecodeError as e:
        raise Torch7Error(f"its idx_to_token holds a token that is not UTF-8: {e}") from None


@dataclass(frozen=True)
class TorchRNNModel:
    """A torch-rnn checkpoint mapped onto CharRNNNet: its architecture, vocabulary and state_dict."""

    architecture: Architecture
    vocab: Vocab
    weights: dict[str, Tensor]
    origin: dict[str, Any]

    def describe(self) -> str:
        a, o = self.architecture, self.origin
        text = f"torch-rnn {a.model_type} {a.num_layers}x{a.rnn_size}, {len(self.vocab)} tokens"
        if "iterations" in o:
            text += f", {o['iterations']:,} iterations"
        if "val_loss" in o:
            text += f", last validation loss {o['val_loss']:.4f}"
        if "json" in o:
            text += f" (from {o['json']})"
        return text


def _origin(path: Path, checkpoint: Any) -> dict[str, Any]:
    """Iterations and last validation loss, from the companion .json when it is there (else the .t7)."""
    record: dict[str, Any] = {"format": "torch-rnn"}
    source: Any = checkpoint if isinstance(checkpoint, dict) else {}
    companion = path.with_suffix(".json")
    try:
        data = json.loads(companion.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            source, record["json"] = {k.encode(): v for k, v in data.items()}, companion.name
    except (OSError, ValueError):
        pass
    if isinstance(source.get(b"i"), (int, float)):
        record["iterations"] = int(source[b"i"])
    losses, its = source.get(b"val_loss_history"), source.get(b"val_loss_history_it")
    if isinstance(losses, list) and losses and isinstance(losses[-1], (int, float)) and math.isfinite(losses[-1]):
        record["val_loss"] = round(float(losses[-1]), 6)
        if isinstance(its, list) and len(its) == len(losses):
            record["val_loss_iteration"] = its[-1]
    return record


def read(path: str | os.PathLike) -> TorchRNNModel:
    """The torch-rnn model in ``path``. Raises Torch7Error (without the file name) when it is unusable."""
    path = Path(path)
    checkpoint = parse(path)
    architecture, tokens, weights = _map(_language_model(checkpoint))
    try:
        vocab = Vocab(tokens)
    except ValueError as e:
        raise Torch7Error(f"its vocabulary is not usable: {e}") from None
    return TorchRNNModel(architecture, vocab, weights, _origin(path.resolve(), checkpoint))
