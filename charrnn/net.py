"""The plain network: embedding -> stacked LSTM/GRU/RNN -> linear head. No Lightning here."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

ModelType = Literal["lstm", "gru", "rnn"]
State = Tensor | tuple[Tensor, Tensor]
_RNNS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharRNNNet(nn.Module):
    """A character language model.

    Args:
        vocab_size: number of tokens.
        model_type: ``lstm``, ``gru`` or ``rnn`` (tanh).
        wordvec_size: embedding width.
        rnn_size: hidden units per layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between layers and before the head.
    """

    def __init__(
        self,
        vocab_size: int,
        model_type: ModelType = "lstm",
        wordvec_size: int = 64,
        rnn_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if model_type not in _RNNS:
            raise ValueError(f"model_type {model_type!r}: choose one of {', '.join(_RNNS)}")
        self.embed = nn.Embedding(vocab_size, wordvec_size)
        self.rnn = _RNNS[model_type](wordvec_size, rnn_size, num_layers, batch_first=True,
                                     dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(rnn_size, vocab_size)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits for the next token after each position of ``x`` (B, T) -> (B, T, V)."""
        out, state = self.rnn(self.embed(x), state)  # (B, T, H)
        return self.head(self.drop(out)), state


def detach_state(state: State) -> State:
    """Cuts the graph at the batch boundary: the state is carried, its history is not backpropagated."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


@torch.no_grad()
def state_to(state: State, device: torch.device) -> State:
    return tuple(s.to(device) for s in state) if isinstance(state, tuple) else state.to(device)
