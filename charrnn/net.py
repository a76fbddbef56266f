"""The plain network: embedding -> stacked LSTM/GRU/RNN -> linear head. No Lightning here."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from charrnn.kernel_choice import lowp_lstm_runs
from charrnn.net_spec import Architecture

State = Tensor | tuple[Tensor, Tensor]  # (layers, B, H), or LSTM's (h, c) pair of those
_RNNS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharRNNNet(nn.Module):
    """A character language model: embedding -> stacked LSTM/GRU/RNN -> linear head, as ``architecture``
    says (:class:`~charrnn.net_spec.Architecture`, which it keeps, so whoever saves the weights saves it too)."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = a = architecture
        vocab_size, wordvec_size, rnn_size, num_layers = a.vocab_size, a.wordvec_size, a.rnn_size, a.num_layers
        cell, dropout = _RNNS[a.model_type], a.dropout
        self.embed = nn.Embedding(vocab_size, wordvec_size)
        if a.layer_norm:
            self.rnns = nn.ModuleList(
                cell(wordvec_size if i == 0 else rnn_size, rnn_size, batch_first=True) for i in range(num_layers))
            self.norms = nn.ModuleList(nn.LayerNorm(rnn_size) for _ in range(num_layers))
        else:
            self.rnn = cell(wordvec_size, rnn_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(rnn_size, vocab_size)
        if a.tie_weights:
            self.head.weight = self.embed.weight
        self.weight_drop = a.weight_drop

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits for the next token after each position of ``x`` (B, T) -> (B, T, V)."""
        h = self.embed(x)  # (B, T, E)
        if hasattr(self, "rnn"):
            h, state = self._run(self.rnn, h, state)  # (B, T, H)
        else:
            h, state = self._layer_by_layer(h, state)
        return self.head(self.drop(h)), state

    def _run(self, rnn: nn.RNNBase, h: Tensor, state: State | None) -> tuple[Tensor, State]:
        """``rnn(h, state)``, with its hidden-to-hidden weights dropped out when training with weight_drop.
        An LSTM under CPU autocast runs in float32 where the CPU has no low-precision LSTM kernel
        (:func:`~charrnn.kernel_choice.lowp_lstm_runs`); the rest of the network keeps the autocast."""
        if (isinstance(rnn, nn.LSTM) and h.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and not lowp_lstm_runs(torch.get_autocast_dtype("cpu"))):
            with torch.autocast("cpu", enabled=False):
                return self._run(rnn, h.float(), None if state is None else map_state(Tensor.float, state))
        if not (self.training and self.weight_drop > 0):
            return rnn(h, state)
        dropped = {name: F.dropout(w, self.weight_drop) for name, w in rnn.named_parameters()
                   if name.startswith("weight_hh")}
        with warnings.catch_warnings():  # on a GPU, cuDNN packs the new weights together (the warning says so)
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            return functional_call(rnn, dropped, (h, state))

    def zero_state(self, batch_size: int) -> State:
        """The state forward() starts from when given none, for ``batch_size`` streams."""
        rnns = [self.rnn] if hasattr(self, "rnn") else list(self.rnns)
        zeros = self.head.weight.new_zeros(sum(r.num_layers for r in rnns), batch_size, rnns[0].hidden_size)
        return (zeros, zeros.clone()) if isinstance(rnns[0], nn.LSTM) else zeros

    def _layer_by_layer(self, h: Tensor, state: State | None) -> tuple[Tensor, State]:
        """The LayerNorm variant; its state has the same (layers, B, H) layout as the fused one."""
        per_layer: list = [None] * len(self.rnns)
        if state is not None:
            per_layer = [map_state(lambda s, i=i: s[i:i + 1], state) for i in range(len(self.rnns))]
        new = []
        for i, (rnn, norm) in enumerate(zip(self.rnns, self.norms)):
            if i:
                h = self.drop(h)
            h, st = self._run(rnn, h, per_layer[i])
            h = norm(h)
            new.append(st)
        return h, map_state(lambda *layers: torch.cat(layers), *new)


# The two layouts of State, for code that need not know which it has; stepper.py's written-out cells index
# the (h, c) pair themselves.
def state_tensors(state: State) -> tuple[Tensor, ...]:
    """The state's tensors: (h, c) for an LSTM, (h,) otherwise."""
    return state if isinstance(state, tuple) else (state,)


def state_from_tensors(tensors: list[Tensor] | tuple[Tensor, ...]) -> State:
    """The inverse of :func:`state_tensors`."""
    return tuple(tensors) if len(tensors) == 2 else tensors[0]


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """``fn`` applied to the corresponding tensors of ``states`` (h with h, c with c), in their layout."""
    return state_from_tensors([fn(*parts) for parts in zip(*map(state_tensors, states), strict=True)])


def detach_state(state: State) -> State:
    """Cuts the graph at the batch boundary: the state is carried, its history is not backpropagated."""
    return map_state(Tensor.detach, state)


def zero_some_rows(state: State, prob: float) -> State:
    """Zeroes the state of each stream (dim 1 of (layers, B, H)) with probability ``prob``."""
    first = state_tensors(state)[0]
    keep = (torch.rand(first.size(1), 1, device=first.device) >= prob).to(first.dtype)  # (B, 1)
    return map_state(lambda s: s * keep, state)
