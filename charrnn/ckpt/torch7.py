"""Torch7's binary serialization (``.t7``), read as data by ``torchfile`` (pure Python): nothing in a file
is executed. A serialized Lua function becomes inert bytes (``torchfile.LuaFunction``).

Two things of ``torchfile`` 0.1.0 are made strict here: a tensor or storage that reaches past the end of
the file (a truncated file) or outside its storage is an error instead of a read of unrelated memory,
and ``long`` is always 8 bytes, as Torch7 writes it on 64-bit Linux and macOS, whatever the platform
reading it (torchfile's own option for that calls Python 2's ``xrange``). The stricter tensor and
storage readers replace torchfile's in its (global) table of type handlers.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torchfile

SUFFIX = ".t7"
_MAGIC = (struct.pack("<i", torchfile.TYPE_TABLE), struct.pack("<i", torchfile.TYPE_TORCH))
_MAX_DIMS = 16


class Torch7Error(ValueError):
    """A .t7 file that is not a usable torch-rnn checkpoint (the caller adds the file name)."""


# ---- torchfile, made strict ---------------------------------------------------------------------
class _Reader(torchfile.T7Reader):
    """torchfile's reader with 8-byte longs on every platform (its own option for that calls
    Python 2's ``xrange``)."""

    def __init__(self, f: Any) -> None:
        super().__init__(f, use_list_heuristic=True, use_int_heuristic=True, force_8bytes_long=True)

    def read_long_array(self, n: int) -> list[int]:
        if not 0 <= n <= _MAX_DIMS:
            raise Torch7Error(f"a tensor with {n} dimensions")
        return list(self._read(f"<{n}q"))


def _remaining(reader: Any) -> int:
    f = reader.f
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end - here


def _storage_reader(dtype: np.dtype) -> Any:
    def read(reader: Any, version: Any) -> np.ndarray:
        size = reader.read_long()
        if not 0 <= size * dtype.itemsize <= _remaining(reader):
            raise Torch7Error(f"a storage of {size} elements runs past the end of the file (truncated?)")
        return np.frombuffer(reader.f.read(size * dtype.itemsize), dtype=dtype).copy()
    return read


def _tensor_reader(dtype: np.dtype) -> Any:
    def read(reader: Any, version: Any) -> np.ndarray:
        ndim = reader.read_int()
        size, stride = reader.read_long_array(ndim), reader.read_long_array(ndim)
        offset = reader.read_long() - 1
        storage = reader.read_obj()
        if storage is None or ndim == 0 or 0 in size:
            return np.empty((0,), dtype=dtype)
        if not isinstance(storage, np.ndarray) or storage.dtype != dtype:
            raise Torch7Error("a tensor whose storage is not a storage of its type")
        if min(size) < 0 or min(stride) < 0 or offset < 0 or \
                offset + sum((n - 1) * s for n, s in zip(size, stride)) >= len(storage):
            raise Torch7Error(f"a tensor of size {tuple(size)} reaches outside its storage (damaged file?)")
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                               strides=[s * dtype.itemsize for s in stride])
        return view.copy()
    return read


for _name, _dtype in [("Byte", np.uint8), ("Char", np.int8), ("Short", np.int16), ("Int", np.int32),
                      ("Long", np.int64), ("Float", np.float32), ("Double", np.float64)]:
    for _prefix in ("torch.", "torch.Cuda"):
        _kind = "" if (_prefix, _name) == ("torch.Cuda", "Float") else _name  # torch.CudaTensor is float
        torchfile.type_handlers[f"{_prefix}{_kind}Storage".encode()] = _storage_reader(np.dtype(_dtype))
        torchfile.type_handlers[f"{_prefix}{_kind}Tensor".encode()] = _tensor_reader(np.dtype(_dtype))


def is_torch7(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant as a Torch7 file: a ``.t7`` name, or Torch7's first bytes."""
    path = Path(path)
    if path.suffix.lower() == SUFFIX:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in _MAGIC
    except OSError:
        return False


def parse(path: str | os.PathLike) -> Any:
    """The object serialized in Torch7 file ``path``, as torchfile's Python values (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise Torch7Error("does not exist")
    if path.stat().st_size == 0:
        raise Torch7Error("is empty (0 bytes); it was not written completely")
    with open(path, "rb") as f:
        if f.read(2) in (b"3\n", b"4\n"):
            raise Torch7Error("is in Torch7's ascii format; only the binary format is read "
                              "(re-save it in Lua with torch.save(path, obj))")
        f.seek(0)
        try:
            obj = _Reader(f).read_obj()
        except Torch7Error as e:
            raise Torch7Error(f"is damaged: {e}") from None
        except torchfile.T7ReaderException:
            raise Torch7Error("is not a Torch7 file (its first bytes are no Torch7 object)") from None
        except (struct.error, EOFError, ValueError, OverflowError, MemoryError, RecursionError,
                NotImplementedError, TypeError, IndexError, KeyError) as e:
            raise Torch7Error(f"is damaged (truncated?) or not a Torch7 file: {type(e).__name__}: {e}") from None
    return obj


def typename(obj: Any) -> str:
    """The Torch7 class name of a parsed object, or "" for a plain Lua value."""
    return obj.torch_typename().decode("utf-8", "replace") if isinstance(obj, torchfile.TorchObject) else ""


def what(obj: Any) -> str:
    """A short description of a parsed Torch7 value, for messages about what a file holds."""
    if isinstance(obj, torchfile.TorchObject):
        return f"a Torch7 {typename(obj)}"
    if isinstance(obj, dict):
        keys = sorted(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in obj)
        return f"a Lua table with keys {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}"
    return f"a Lua {type(obj).__name__}"
