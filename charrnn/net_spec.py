"""The architecture of a network, defined once, and what it implies, checked against stored weights before
anything is allocated.

:class:`Architecture` is what a :class:`~charrnn.net.CharRNNNet` is built from; every checkpoint and export
saves it beside the weights (``asdict``), as nanoGPT saves its ``model_args``, so a file describes its own
network. ``CharRNN`` takes the same fields as typed arguments, since LightningCLI makes its
``--model.*`` flags from that signature; tests/test_model.py holds the two to the same names, types and
defaults.

A damaged or tampered file can ask for an absurd network (``num_layers`` 10⁹ would hang while the layers
are built) or hold weights of the wrong dtype or shape (an integer matrix would be copied into the float
parameters and sample garbage). :func:`check_weights` refuses such a file using only the architecture and
the stored tensors' shapes and dtypes: the shapes the architecture implies are worked out by arithmetic,
and only after they match the stored ones exactly is the network built, so it never takes more memory
than the file's weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal

import torch

ModelType = Literal["lstm", "gru", "rnn"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate blocks stacked in each weight_ih/weight_hh
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Architecture:
    """What shapes a character language model (and, with ``weight_drop``, how its recurrent weights are
    regularised), checked when made: a network is never built from values that mean nothing.

    Attributes:
        vocab_size: number of tokens.
        model_type: ``lstm``, ``gru`` or ``rnn`` (tanh).
        wordvec_size: embedding width.
        rnn_size: hidden units per layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between layers and before the head.
        layer_norm: LayerNorm on each layer's output (between layers and before the head). Layers then
            run one by one instead of as one fused multi-layer kernel.
        tie_weights: share the embedding matrix with the output layer (needs wordvec_size == rnn_size).
        weight_drop: DropConnect on the recurrent (hidden-to-hidden) weights while training, AWD-LSTM's
            regulariser: each step drops this fraction of them, the same for every time step and stream.
    """

    vocab_size: int
    model_type: ModelType = "lstm"
    wordvec_size: int = 64
    rnn_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    layer_norm: bool = False
    tie_weights: bool = False
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        if problems := architecture_problems(asdict(self)):
            raise ValueError("; ".join(problems))

    @classmethod
    def from_fields(cls, given: Mapping[str, Any], vocab_size: int) -> Architecture:
        """The architecture that ``given`` records for a vocabulary of ``vocab_size`` tokens: a saved
        Architecture, or settings that hold its fields among others (``CharRNN``'s hyperparameters, which
        is all that checkpoints written before the Architecture was saved have). A field ``given`` lacks
        takes its default; a ``vocab_size`` it holds must be ``vocab_size``.

        Raises:
            ValueError: what is wrong, in one line.
        """
        if not isinstance(given, Mapping):
            raise ValueError(f"its architecture is a {type(given).__name__}, not a mapping of its fields")
        if "vocab_size" in given and given["vocab_size"] != vocab_size:
            raise ValueError(f"its architecture's vocab_size {given['vocab_size']!r} is not the {vocab_size} "
                             "tokens of its vocabulary")
        values = {f.name: given[f.name] for f in fields(cls) if f.name in given and f.name != "vocab_size"}
        try:
            return cls(vocab_size, **values)
        except ValueError as e:
            raise ValueError(f"its architecture is not valid: {e}") from None


ARCHITECTURE_FIELDS = tuple(f.name for f in fields(Architecture) if f.name != "vocab_size")  # CharRNN's too
DEFAULTS = {f.name: f.default for f in fields(Architecture) if f.default is not MISSING}


def architecture_problems(given: Mapping[str, Any]) -> list[str]:
    """What is wrong with the architecture fields among ``given`` (others are not looked at), each starting
    with the field's name; empty when they are fine."""
    arch = {**DEFAULTS, **{k: v for k, v in given.items() if k in DEFAULTS or k == "vocab_size"}}
    problems = []
    if not isinstance(arch["model_type"], str) or arch["model_type"] not in GATES:
        problems.append(f"model_type {arch['model_type']!r} is not one of {', '.join(GATES)}")
    for k in ("vocab_size", "wordvec_size", "rnn_size", "num_layers"):
        if k in arch and (type(arch[k]) is not int or arch[k] < 1):
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


def parameter_count(arch: Architecture) -> int:
    """Numbers in the state dict of ``arch``, by arithmetic: no loop over layers."""
    g, e, h, layers, v = GATES[arch.model_type], arch.wordvec_size, arch.rnn_size, arch.num_layers, arch.vocab_size
    recurrent = g * h * (e + h + 2) + (layers - 1) * g * h * (2 * h + 2)
    return v * e + recurrent + (2 * h * layers if arch.layer_norm else 0) + v * (h + 1)


def tensor_count(arch: Architecture) -> int:
    """How many tensors the state dict of ``arch`` holds (embedding, 4 per layer, 2 more with LayerNorm, head)."""
    return 1 + arch.num_layers * (6 if arch.layer_norm else 4) + 2


def expected_shapes(arch: Architecture) -> dict[str, Shape]:
    """The state dict's tensor shapes for ``arch``, by name."""
    g, e, h, v = GATES[arch.model_type], arch.wordvec_size, arch.rnn_size, arch.vocab_size
    shapes: dict[str, Shape] = {"embed.weight": (v, e)}
    for i in range(arch.num_layers):
        prefix, suffix = (f"rnns.{i}.", "_l0") if arch.layer_norm else ("rnn.", f"_l{i}")
        shapes |= {f"{prefix}weight_ih{suffix}": (g * h, e if i == 0 else h), f"{prefix}weight_hh{suffix}": (g * h, h),
                   f"{prefix}bias_ih{suffix}": (g * h,), f"{prefix}bias_hh{suffix}": (g * h,)}
        if arch.layer_norm:
            shapes |= {f"norms.{i}.weight": (h,), f"norms.{i}.bias": (h,)}
    return shapes | {"head.weight": (v, h), "head.bias": (v,)}


def check_weights(arch: Architecture, stored: Mapping[str, tuple[Shape, Any]]) -> None:
    """Refuses weights that are not exactly what ``arch`` implies.

    Args:
        arch: the stored architecture.
        stored: each stored tensor's shape and dtype by name (read without loading the data, for an export).

    Raises:
        ValueError: what does not fit, in one line (the caller names the file).
    """
    if tensor_count(arch) != len(stored):
        raise ValueError(f"its architecture ({arch.num_layers} {arch.model_type} layers) has "
                         f"{tensor_count(arch)} weight tensors, but the file holds {len(stored)}")
    odd = sorted({str(dtype).removeprefix("torch.") for _, dtype in stored.values() if dtype not in WEIGHT_DTYPES})
    if odd:
        raise ValueError(f"its weights are of dtype {', '.join(odd)}; a model's weights are floating point "
                         "(float32, float16, bfloat16 or float64)")
    dtypes = sorted({str(dtype).removeprefix("torch.") for _, dtype in stored.values()})
    if len(dtypes) > 1:
        raise ValueError(f"its weights mix dtypes ({', '.join(dtypes)}); a model's weights all have one dtype")
    for name, shape in expected_shapes(arch).items():
        if name not in stored:
            raise ValueError(f"its architecture needs a weight {name} that the file does not hold")
        if tuple(stored[name][0]) != shape:
            raise ValueError(f"weight {name} has shape {tuple(stored[name][0])}, but its architecture and "
                             f"{arch.vocab_size}-token vocabulary imply {shape}")
