"""The character vocabulary and its torch-rnn JSON form.

In memory tokens are 0-based; on disk (torch-rnn's .h5/.json) they are 1-based. A vocabulary is
either one token per Unicode character, or (torch-rnn's ``--encoding bytes``) one token per byte,
where bytes above 127 are spelled ``"[N]"`` in the JSON.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from charrnn.files import check_readable

MAX_VOCAB_FILE = 64 << 20  # bytes
_BYTE_TOKEN = re.compile(r"^\[(\d{3})\]$")


def byte_token(b: int) -> str:
    """torch-rnn's spelling of one byte as a token (``"[200]"`` above 127)."""
    return chr(b) if b < 128 else f"[{b}]"


def _unit_value(token: str) -> int:
    """Code point of a character token, or the byte value of a ``"[N]"`` token."""
    return int(token[1:-1]) if len(token) > 1 else ord(token)


class Vocab:
    """Maps tokens to 0-based indices and text to index arrays and back.

    Args:
        tokens: token strings in index order (index 0 is torch-rnn's index 1).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens: list[str] = list(tokens)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            twice = next(t for i, t in enumerate(self.tokens) if self.index[t] != i)
            raise ValueError(f"vocabulary has duplicate tokens ({twice!r} more than once)")
        # A byte vocabulary spells high bytes as "[N]"; a character vocabulary has single characters.
        self.byte_level = any(len(t) > 1 for t in self.tokens)
        for t in self.tokens:
            if len(t) != 1 and not (_BYTE_TOKEN.match(t) and 127 < int(t[1:-1]) < 256):
                raise ValueError(f"token {t!r} is neither one character nor a byte written as [N]")

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens{', bytes' if self.byte_level else ''})"

    # ---- text <-> indices -------------------------------------------------------------------
    def _units(self, text: str) -> list[str]:
        """The token strings that spell ``text`` (characters, or bytes for a byte vocabulary)."""
        if self.byte_level:
            return [byte_token(b) for b in text.encode("utf-8")]
        return list(text)

    def unknown(self, text: str) -> Counter[str]:
        """Counts of the characters (or bytes) of ``text`` that are not in the vocabulary."""
        return Counter(u for u in self._units(text) if u not in self.index)

    def swap_case_or_leave_out(self, text: str) -> tuple[str, Counter[str]]:
        """A prime's policy for characters the vocabulary lacks: ``text`` with each of them replaced by its
        other case when that is known (``"Q"`` for a lowercase model becomes ``"q"``) and left out otherwise;
        and the counts of the characters left out. (A corpus's, ``--unknown drop``, only leaves them out.)"""
        kept: list[str] = []
        left_out: Counter[str] = Counter()
        for ch in text:
            if not self.unknown(ch):
                kept.append(ch)
            elif not self.unknown(ch.swapcase()):
                kept.append(ch.swapcase())
            else:
                left_out[ch] += 1
        return "".join(kept), left_out

    def encode(self, text: str) -> list[int]:
        """0-based indices of ``text``; a character outside the vocabulary raises KeyError (a prime goes
        through :meth:`swap_case_or_leave_out` first)."""
        try:
            return [self.index[u] for u in self._units(text)]
        except KeyError as e:
            raise KeyError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, indices: Iterable[int]) -> str:
        """Text of 0-based ``indices``; a byte vocabulary decodes UTF-8 with replacement."""
        if self.byte_level:
            return self.decode_bytes(indices).decode("utf-8", errors="replace")
        return "".join(self.tokens[i] for i in indices)

    def decode_bytes(self, indices: Iterable[int]) -> bytes:
        """The bytes of 0-based ``indices`` of a byte vocabulary."""
        return bytes(_unit_value(self.tokens[i]) for i in indices)

    # ---- torch-rnn JSON -----------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, dict[str, int] | dict[str, str]]:
        return {
            "token_to_idx": {t: i + 1 for i, t in enumerate(self.tokens)},
            "idx_to_token": {str(i + 1): t for i, t in enumerate(self.tokens)},
        }

    @classmethod
    def from_json_dict(cls, data: dict, source: str = "vocabulary") -> Vocab:
        """Reads torch-rnn's ``idx_to_token`` (or ``token_to_idx``); indices must be 1..V."""
        if not isinstance(data, dict) or not isinstance(data.get("idx_to_token", data.get("token_to_idx")), dict):
            raise ValueError(f"{source}: no idx_to_token or token_to_idx object; is this a torch-rnn vocabulary?")
        try:
            if "idx_to_token" in data:
                pairs = {int(k): v for k, v in data["idx_to_token"].items()}
            else:
                pairs = {int(v): k for k, v in data["token_to_idx"].items()}
        except (TypeError, ValueError):
            raise ValueError(f"{source}: its token indices are not all whole numbers") from None
        if sorted(pairs) != list(range(1, len(pairs) + 1)):
            raise ValueError(f"{source}: token indices must be 1..{len(pairs)} without gaps")
        if not all(isinstance(t, str) for t in pairs.values()):
            raise ValueError(f"{source}: its tokens are not all strings")
        try:
            return cls([pairs[i] for i in range(1, len(pairs) + 1)])
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        path = Path(path)
        check_readable(path, "vocabulary file")  # a pipe or device would hang the read
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_VOCAB_FILE + 1)  # bounded: a huge file given by mistake must not fill memory
            if len(raw) > MAX_VOCAB_FILE:
                raise ValueError(f"vocabulary file {path} is larger than {MAX_VOCAB_FILE >> 20} MiB; a vocabulary "
                                 "JSON is a few kB (is it the corpus?)")
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"vocabulary file {path} is not valid JSON: {e}") from None
        except RecursionError:
            raise ValueError(f"vocabulary file {path} is nested too deeply to be a vocabulary") from None
        except IsADirectoryError:
            raise ValueError(f"vocabulary file {path} is a directory") from None
        except OSError as e:
            raise ValueError(f"vocabulary file {path} cannot be read: {e.strerror}") from None
        return cls.from_json_dict(data, source=str(path))

    # ---- lookup tables for fast bulk encoding --------------------------------------------------
    def lookup_table(self, size: int) -> np.ndarray:
        """1-based index by code point (or byte value) for units below ``size``; 0 marks an unknown."""
        table = np.zeros(size, dtype=np.uint32)
        for i, t in enumerate(self.tokens):
            if _unit_value(t) < size:
                table[_unit_value(t)] = i + 1
        return table
