"""One token at a time through a :class:`CharRNNNet`, for sampling.

Feeding a (B, 1) batch to ``nn.LSTM`` pays for a sequence kernel that a single step does not need: on
a CPU it takes 2-4x longer than the cell written out with one matrix product per layer. The stepper
does the latter for the fused LSTM/GRU/RNN layouts (the same arithmetic as PyTorch's cells) and falls
back to the network itself for the rest (the LayerNorm variant).

With ``int8=True`` those products run in 8-bit integers (see :class:`Linear`), for a change in loss of
about 1e-4 nats/char; each row's result is then exactly the same whatever the other rows are (integer
sums), where float kernels chosen per batch size may differ in the last bit. Whether that is faster
depends on the CPU (with VNNI int8 wins, without it float does): :func:`choose_products` measures it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from charrnn.kernel_choice import Choice, choose, time_alternating
from charrnn.net import CharRNNNet, State


class Linear:
    """``x @ weight.T + bias``, in float or in 8-bit integers (int32 sums).

    The int8 form is for inputs within [-1, 1], as every recurrent layer's state and output are: they
    are rounded to multiples of 1/127, the weights to 127 steps of each output's largest weight.
    """

    def __init__(self, weight: Tensor, bias: Tensor, int8: bool = False) -> None:
        self.bias = bias.detach().clone()
        self.int8 = int8
        if int8:
            scale = weight.abs().amax(1).clamp_min(1e-12) / 127  # (out,)
            self.weight = (weight / scale[:, None]).round().to(torch.int8).t().contiguous()  # (in, out)
            self.dequantize = scale / 127
        else:
            self.weight = weight.detach().t().contiguous()

    def __call__(self, x: Tensor) -> Tensor:
        if not self.int8:
            return torch.addmm(self.bias, x, self.weight)
        q = x.mul(127).round_().to(torch.int8)
        return torch.addcmul(self.bias, torch._int_mm(q, self.weight).float(), self.dequantize)


def int8_available(device: torch.device | str = "cpu") -> bool:
    """Whether this build of torch multiplies int8 matrices of the stepper's shapes on ``device``."""
    try:
        a = torch.ones(1, 32, dtype=torch.int8, device=device)
        return bool((torch._int_mm(a, a.t().contiguous()) == 32).all())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


class Stepper:
    """``stepper(tokens (B,), state) -> (logits (B, V), state)``, with the network's own state layout.

    For a network in eval mode (there is no dropout between steps). The weights are read when the
    stepper is made: make a new one after they change.

    The first layer's input product is looked up in a table (one row per token). An LSTM's cell-input
    gate is computed from a sigmoid of twice its argument (tanh x = 2 sigmoid(2x) - 1), so one sigmoid
    covers all four gates.
    """

    def __init__(self, net: CharRNNNet, int8: bool = False) -> None:
        self.net = net
        rnn = getattr(net, "rnn", None)
        self.kind = ""
        if isinstance(rnn, nn.LSTM | nn.GRU | nn.RNN) and not rnn.bidirectional and not getattr(rnn, "proj_size", 0) \
                and getattr(rnn, "nonlinearity", "tanh") == "tanh":
            self.kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru" if isinstance(rnn, nn.GRU) else "rnn"
            self._read(rnn, int8)

    @torch.no_grad()
    def _read(self, rnn: nn.RNNBase, int8: bool) -> None:
        hidden = rnn.hidden_size
        self.table = torch.empty(0)
        self.inputs: list[Linear] = []  # the input product of layers after the first (GRU)
        self.recurrent: list[Linear] = []  # the state product (with the input product, for LSTM/RNN layers > 0)
        for i in range(rnn.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{i}").clone(), getattr(rnn, f"weight_hh_l{i}").clone()
            b_ih = getattr(rnn, f"bias_ih_l{i}", None)
            b_hh = getattr(rnn, f"bias_hh_l{i}", None)
            b_ih = w_ih.new_zeros(w_ih.size(0)) if b_ih is None else b_ih.clone()
            b_hh = w_hh.new_zeros(w_hh.size(0)) if b_hh is None else b_hh.clone()
            if self.kind == "lstm":
                for t in (w_ih, w_hh, b_ih, b_hh):
                    t[2 * hidden:3 * hidden] *= 2
            if self.kind != "gru":  # the reset gate multiplies W_hn h + b_hn alone: a GRU keeps them apart
                b_ih, b_hh = b_ih + b_hh, torch.zeros_like(b_hh)
            if i == 0:
                self.table = torch.addmm(b_ih, self.net.embed.weight, w_ih.t())  # (V, G)
                self.recurrent.append(Linear(w_hh, b_hh, int8))
            elif self.kind == "gru":
                self.inputs.append(Linear(w_ih, b_ih, int8))
                self.recurrent.append(Linear(w_hh, b_hh, int8))
            else:
                self.recurrent.append(Linear(torch.cat([w_ih, w_hh], 1), b_ih, int8))

    @torch.no_grad()
    def __call__(self, tokens: Tensor, state: State | None) -> tuple[Tensor, State]:
        net = self.net
        if not self.kind:
            logits, state = net(tokens[:, None], state)
            return logits[:, 0], state
        if state is None:
            state = net.zero_state(tokens.size(0))
        x = self.table[tokens]  # (B, G): the first layer's input product
        hs, cs = [], []
        for i, recurrent in enumerate(self.recurrent):
            h = (state[0] if self.kind == "lstm" else state)[i]
            if self.kind == "gru":
                gi = x if i == 0 else self.inputs[i - 1](x)
                r_x, z_x, n_x = gi.chunk(3, 1)
                r_h, z_h, n_h = recurrent(h).chunk(3, 1)
                reset, update = (r_x + r_h).sigmoid(), (z_x + z_h).sigmoid()
                x = torch.lerp((n_x + reset * n_h).tanh(), h, update)
            else:
                pre = x + recurrent(h) if i == 0 else recurrent(torch.cat([x, h], 1))
                if self.kind == "rnn":
                    x = pre.tanh()
                else:
                    in_gate, forget, cell, out = pre.sigmoid().chunk(4, 1)
                    c = (forget * state[1][i]).addcmul_(in_gate, cell.mul(2).sub_(1))
                    x = out * c.tanh()
                    cs.append(c)
            hs.append(x)
        new: State = (torch.stack(hs), torch.stack(cs)) if self.kind == "lstm" else torch.stack(hs)
        return net.head(x), new


def choose_products(net: CharRNNNet, rows: tuple[int, ...] = (5, 40), steps: int = 8) -> Choice:
    """Float or int8 products for ``net``, whichever steps faster here: each candidate runs ``steps`` steps of
    every batch size in ``rows`` (a quiet server's and a busy one's), with the torch threads as set now.
    A few tenths of a second; float unless int8 is clearly faster."""
    def run(stepper: Stepper) -> Callable[[], None]:
        def steps_of_each_size() -> None:
            for n in rows:
                tokens, state = torch.zeros(n, dtype=torch.long), None
                for _ in range(steps):
                    _, state = stepper(tokens, state)
        return steps_of_each_size

    return choose(time_alternating({"float": run(Stepper(net)), "int8": run(Stepper(net, int8=True))},
                                   budget=0.25), default="float")
