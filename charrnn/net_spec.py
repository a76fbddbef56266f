"""What a network's hyperparameters imply, checked against stored weights before anything is allocated.

A checkpoint or an export records the architecture beside the weights. A damaged or tampered file can ask
for an absurd network (``num_layers`` 10⁹ would hang while the layers are built) or hold weights of the
wrong dtype or shape (an integer matrix would be copied into the float parameters and sample garbage).
:func:`check_weights` refuses such a file using only the hyperparameters and the stored tensors' shapes
and dtypes: the shapes the architecture implies are worked out by arithmetic, and only after they match
the stored ones exactly is the network built, so it never takes more memory than the file's weights.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch

from charrnn.net import CharRNNNet

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate blocks stacked in each weight_ih/weight_hh
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_DEFAULTS = {name: p.default for name, p in inspect.signature(CharRNNNet).parameters.items()
             if p.default is not inspect.Parameter.empty}
Shape = tuple[int, ...]


def architecture(args: Mapping[str, Any]) -> dict[str, Any]:
    """The network's hyperparameters (CharRNNNet's defaults where ``args`` lacks one), checked for type and range."""
    arch = {k: args.get(k, d) for k, d in _DEFAULTS.items()}
    problems = architecture_problems(arch)
    if problems:
        raise ValueError("its architecture is not valid: " + "; ".join(problems))
    return arch


def architecture_problems(arch: Mapping[str, Any]) -> list[str]:
    """What is wrong with the hyperparameters ``arch`` (all of CharRNNNet's but the vocabulary size), each
    starting with the hyperparameter's name; empty when they are fine."""
    problems = []
    if arch["model_type"] not in GATES:
        problems.append(f"model_type {arch['model_type']!r} is not one of {', '.join(GATES)}")
    for k in ("wordvec_size", "rnn_size", "num_layers"):
        if type(arch[k]) is not int or arch[k] < 1:
            problems.append(f"{k} {arch[k]!r} is not a whole number ≥1")
    for k, top in (("dropout", "1]"), ("weight_drop", "1)")):
        v = arch[k]
        if type(v) not in (int, float) or not math.isfinite(v) or not (0 <= v <= 1 if top == "1]" else 0 <= v < 1):
            problems.append(f"{k} {v!r} is not a fraction in [0, {top}")
    for k in ("layer_norm", "tie_weights"):
        if type(arch[k]) is not bool:
            problems.append(f"{k} {arch[k]!r} is not true or false")
    if not problems and arch["tie_weights"] and arch["wordvec_size"] != arch["rnn_size"]:
        problems.append(f"tie_weights needs wordvec_size == rnn_size ({arch['wordvec_size']} and {arch['rnn_size']})")
    return problems


def parameter_count(vocab_size: int, arch: Mapping[str, Any]) -> int:
    """Numbers in the state dict of ``arch`` (checked by :func:`architecture`), by arithmetic: no loop over layers."""
    g, e, h, layers = GATES[arch["model_type"]], arch["wordvec_size"], arch["rnn_size"], arch["num_layers"]
    recurrent = g * h * (e + h + 2) + (layers - 1) * g * h * (2 * h + 2)
    return vocab_size * e + recurrent + (2 * h * layers if arch["layer_norm"] else 0) + vocab_size * (h + 1)


def tensor_count(arch: Mapping[str, Any]) -> int:
    """How many tensors the state dict of ``arch`` holds (embedding, 4 per layer, 2 more with LayerNorm, head)."""
    return 1 + arch["num_layers"] * (6 if arch["layer_norm"] else 4) + 2


def expected_shapes(vocab_size: int, arch: Mapping[str, Any]) -> dict[str, Shape]:
    """The state dict's tensor shapes for ``arch`` (checked by :func:`architecture`), by name."""
    g, e, h, layers = GATES[arch["model_type"]], arch["wordvec_size"], arch["rnn_size"], arch["num_layers"]
    shapes: dict[str, Shape] = {"embed.weight": (vocab_size, e)}
    for i in range(layers):
        prefix, suffix = (f"rnns.{i}.", "_l0") if arch["layer_norm"] else ("rnn.", f"_l{i}")
        shapes |= {f"{prefix}weight_ih{suffix}": (g * h, e if i == 0 else h), f"{prefix}weight_hh{suffix}": (g * h, h),
                   f"{prefix}bias_ih{suffix}": (g * h,), f"{prefix}bias_hh{suffix}": (g * h,)}
        if arch["layer_norm"]:
            shapes |= {f"norms.{i}.weight": (h,), f"norms.{i}.bias": (h,)}
    return shapes | {"head.weight": (vocab_size, h), "head.bias": (vocab_size,)}


def check_weights(vocab_size: int, args: Mapping[str, Any], stored: Mapping[str, tuple[Shape, Any]]) -> dict[str, Any]:
    """Refuses weights that are not exactly what the architecture ``args`` and the vocabulary size imply.

    Args:
        vocab_size: tokens in the vocabulary stored beside the weights.
        args: the stored hyperparameters (CharRNNNet's arguments; others are ignored).
        stored: each stored tensor's shape and dtype by name (read without loading the data, for an export).

    Returns:
        the checked architecture.

    Raises:
        ValueError: what does not fit, in one line (the caller names the file).
    """
    arch = architecture(args)
    if tensor_count(arch) != len(stored):
        raise ValueError(f"its architecture ({arch['num_layers']} {arch['model_type']} layers) has "
                         f"{tensor_count(arch)} weight tensors, but the file holds {len(stored)}")
    odd = sorted({str(dtype).removeprefix("torch.") for _, dtype in stored.values() if dtype not in WEIGHT_DTYPES})
    if odd:
        raise ValueError(f"its weights are of dtype {', '.join(odd)}; a model's weights are floating point "
                         "(float32, float16, bfloat16 or float64)")
    dtypes = sorted({str(dtype).removeprefix("torch.") for _, dtype in stored.values()})
    if len(dtypes) > 1:
        raise ValueError(f"its weights mix dtypes ({', '.join(dtypes)}); a model's weights all have one dtype")
    for name, shape in expected_shapes(vocab_size, arch).items():
        if name not in stored:
            raise ValueError(f"its architecture needs a weight {name} that the file does not hold")
        if tuple(stored[name][0]) != shape:
            raise ValueError(f"weight {name} has shape {tuple(stored[name][0])}, but its architecture and "
                             f"{vocab_size}-token vocabulary imply {shape}")
    return arch
