"""Torch7 files for tests: a small writer of Torch7's binary format, torch-rnn-shaped models built with
it, and a plain numpy re-implementation of torch-rnn's forward pass that reads modules as torchfile
returns them (independent of charrnn.ckpt.torch7's mapping)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Torch:
    """A Torch7 class instance: its class name and its fields (a Lua table)."""

    cls: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class LuaFunction:
    """A serialized Lua function: bytes that Lua's loadstring would run."""

    code: bytes


@dataclass
class Strided:
    """A tensor as Torch7 stores it: size, stride (in elements) and offset into a storage, written as given
    (so a damaged one can be made)."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage: np.ndarray
    offset: int = 1


_TENSOR = {np.dtype(np.float32): "Float", np.dtype(np.float64): "Double", np.dtype(np.int64): "Long"}


class _Writer:
    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.index = 0

    def _int(self, v: int) -> None:
        self.out.write(struct.pack("<i", v))

    def _long(self, v: int) -> None:
        self.out.write(struct.pack("<q", v))

    def _string(self, s: str | bytes) -> None:
        data = s.encode() if isinstance(s, str) else s
        self._int(len(data))
        self.out.write(data)

    def _ref(self, kind: int) -> None:
        self.index += 1
        self._int(kind)
        self._int(self.index)

    def obj(self, v: Any) -> None:
        if v is None:
            self._int(0)
        elif isinstance(v, bool):
            self._int(5)
            self._int(int(v))
        elif isinstance(v, (int, float)):
            self._int(1)
            self.out.write(struct.pack("<d", v))
        elif isinstance(v, (str, bytes)):
            self._int(2)
            self._string(v)
        elif isinstance(v, (dict, list)):
            items = list(v.items()) if isinstance(v, dict) else [(i + 1, x) for i, x in enumerate(v)]
            self._ref(3)
            self._int(len(items))
            for k, x in items:
                self.obj(k)
                self.obj(x)
        elif isinstance(v, Torch):
            self._ref(4)
            self._string("V 1")
            self._string(v.cls)
            self.obj(v.fields)
        elif isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            self.obj(Strided(a.shape, tuple(s // a.itemsize for s in a.strides), a.ravel()))
        elif isinstance(v, Strided):
            kind = _TENSOR[v.storage.dtype]
            self._ref(4)
            self._string("V 1")
            self._string(f"torch.{kind}Tensor")
            self._int(len(v.shape))
            for n in (*v.shape, *v.strides):
                self._long(n)
            self._long(v.offset)  # 1-based
            self._ref(4)
            self._string("V 1")
            self._string(f"torch.{kind}Storage")
            self._long(v.storage.size)
            self.out.write(v.storage.tobytes())
        elif isinstance(v, LuaFunction):
            self._ref(6)
            self._string(v.code)
            self.obj({})  # upvalues
        else:
            raise TypeError(type(v))


def write_t7(path: Path, obj: Any) -> Path:
    """Writes ``obj`` in Torch7's binary format (as torch.save on 64-bit Linux)."""
    w = _Writer()
    w.obj(obj)
    path.write_bytes(w.out.getvalue())
    return path


def language_model(kind: str = "lstm", vocab: str = "abcdefgh \n", wordvec: int = 5, hidden: int = 7,
                   layers: int = 2, batchnorm: bool = False, dropout: float = 0.0, seed: int = 0,
                   dtype: type = np.float32) -> Torch:
    """A torch-rnn nn.LanguageModel with random weights, laid out as torch-rnn's LanguageModel.lua does."""
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.normal(0, 0.5, shape).astype(dtype)  # noqa: E731
    V, gates = len(vocab), 4 if kind == "lstm" else 1
    modules: list[Any] = [Torch("nn.LookupTable", {"weight": f32(V, wordvec)})]
    for i in range(layers):
        d = wordvec if i == 0 else hidden
        cls = "nn.LSTM" if kind == "lstm" else "nn.VanillaRNN"
        modules.append(Torch(cls, {"weight": f32(d + hidden, gates * hidden), "bias": f32(gates * hidden),
                                   "input_dim": d, "hidden_dim": hidden, "remember_states": True}))
        if batchnorm:
            modules += [Torch("nn.View", {}),
                        Torch("nn.BatchNormalization", {
                            "weight": f32(hidden), "bias": f32(hidden), "eps": 1e-5,
                            "running_mean": f32(hidden),
                            "running_var": (rng.random(hidden) + 0.5).astype(dtype)}),
                        Torch("nn.View", {})]
        if dropout > 0:
            modules.append(Torch("nn.Dropout", {"p": dropout, "train": True}))
    modules += [Torch("nn.View", {}), Torch("nn.Linear", {"weight": f32(V, hidden), "bias": f32(V)}),
                Torch("nn.View", {})]
    return Torch("nn.LanguageModel", {
        "net": Torch("nn.Sequential", {"modules": modules}),
        "model_type": kind, "batchnorm": int(batchnorm), "dropout": dropout, "num_layers": layers,
        "rnn_size": hidden, "wordvec_dim": wordvec, "vocab_size": V,
        "idx_to_token": {i + 1: t for i, t in enumerate(vocab)},
        "token_to_idx": {t: i + 1 for i, t in enumerate(vocab)},
    })


def checkpoint(model: Any, **extra: Any) -> dict[str, Any]:
    """The table torch-rnn's train.lua saves."""
    return {"model": model, "opt": {"batch_size": 50, "seq_length": 50}, "i": 100,
            "val_loss_history": [2.5, 2.25], "val_loss_history_it": [50, 100], **extra}


class TorchRNNReference:
    """torch-rnn's LanguageModel forward pass, one stream, in float64 numpy, from torchfile's objects.

    Written from torch-rnn's LSTM.lua / VanillaRNN.lua / LanguageModel.lua: the LSTM's gates are
    ``x Wx + h Wh + b`` split as input, forget, output, candidate; states carry across calls.
    """

    def __init__(self, model: Any) -> None:
        self.modules = model[b"net"][b"modules"]
        self.states: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def forward(self, tokens: list[int]) -> np.ndarray:
        """Scores (T, V) after each of the 0-based ``tokens``."""
        x = np.asarray(self.modules[0][b"weight"], np.float64)[tokens]  # (T, D)
        for i, m in enumerate(self.modules[1:], 1):
            name = m.torch_typename().decode()
            if name in ("nn.LSTM", "nn.VanillaRNN"):
                x = self._recurrent(i, m, x)
            elif name == "nn.BatchNormalization":
                x = (x - m[b"running_mean"]) / np.sqrt(m[b"running_var"] + m[b"eps"]) * m[b"weight"] + m[b"bias"]
            elif name == "nn.Linear":
                x = x @ np.asarray(m[b"weight"], np.float64).T + m[b"bias"]
            elif name not in ("nn.View", "nn.Dropout"):  # views only reshape; dropout is off when sampling
                raise ValueError(name)
        return x

    def _recurrent(self, i: int, m: Any, x: np.ndarray) -> np.ndarray:
        w, b = np.asarray(m[b"weight"], np.float64), np.asarray(m[b"bias"], np.float64)
        D = x.shape[1]
        lstm = m.torch_typename() == b"nn.LSTM"
        H = w.shape[1] // (4 if lstm else 1)
        h, c = self.states.get(i, (np.zeros(H), np.zeros(H)))
        out = []
        sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
        for xt in x:
            a = xt @ w[:D] + h @ w[D:] + b
            if lstm:
                gi, gf, go, gg = sigmoid(a[:H]), sigmoid(a[H:2 * H]), sigmoid(a[2 * H:3 * H]), np.tanh(a[3 * H:])
                c = gf * c + gi * gg
                h = go * np.tanh(c)
            else:
                h = np.tanh(a)
            out.append(h)
        self.states[i] = (h, c)
        return np.stack(out)
