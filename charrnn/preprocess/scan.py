"""Pass 1: the vocabulary of a text (its units in order of first occurrence) and its length, or, with a
given vocabulary, the units it lacks.

Each part of the file lists its own units; taken in part order, the units not seen in an earlier part give
the whole file's order of first occurrence. Runs of ASCII are never decoded (see :mod:`charrnn.units`):
their bytes are searched with ``bytes.translate``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.preprocess.reading import byte_values, pieces, unit_space
from charrnn.vocab import Vocab, byte_token

BLOCK = 1 << 16


@dataclass
class Scan:
    """What pass 1 learns about a file, or one part of it."""

    units: list[int] = field(default_factory=list)  # code points (or byte values), first-occurrence order
    total: int = 0  # the units that are kept: all of them, or those a given vocabulary knows
    unknown: Counter[int] = field(default_factory=Counter)

    def vocab(self, encoding: str) -> Vocab:
        """The vocabulary of the units found, in order of first occurrence."""
        spell = byte_token if encoding == "bytes" else chr
        return Vocab([spell(u) for u in self.units])


def _new_bytes(chunk: bytes, known: bytes) -> list[int]:
    """Byte values of ``chunk`` not in ``known``, in order of first occurrence."""
    fresh = set(chunk.translate(None, known))
    return sorted(fresh, key=lambda b: chunk.index(b)) if fresh else []


def _new_code_points(units: np.ndarray, seen: np.ndarray) -> list[int]:
    """Code points of ``units`` not marked in ``seen``, in order of first occurrence; marks them."""
    found: list[int] = []
    # Small blocks keep the search for new units cheap: after the first few, almost none are new.
    for start in range(0, len(units), BLOCK):
        fresh = units[start : start + BLOCK]
        fresh = fresh[~seen[fresh]]  # in order of position
        if fresh.size:
            values, first = np.unique(fresh, return_index=True)
            found.extend(int(v) for v in values[np.argsort(first)])
            seen[values] = True
    return found


def scan(path: Path, encoding: str, vocab: Vocab | None, start: int = 0, stop: int | None = None) -> Scan:
    """Pass 1 over the bytes ``start:stop``: the units in order of first occurrence, or with a given
    vocabulary the units it lacks."""
    if vocab is not None:
        return _scan_unknown(path, encoding, vocab, start, stop)
    result = Scan()
    seen = np.zeros(unit_space(encoding), dtype=bool)
    known = b""  # the byte values among result.units, for bytes.translate
    for units in pieces(path, encoding, start, stop):
        result.total += len(units)
        if isinstance(units, bytes):
            fresh = _new_bytes(units, known)
            seen[fresh] = True
        else:
            fresh = _new_code_points(units, seen)
        if fresh:
            result.units.extend(fresh)
            known += bytes(u for u in fresh if u < 256)
    return result


def _scan_unknown(path: Path, encoding: str, vocab: Vocab, start: int, stop: int | None) -> Scan:
    """Pass 1 against a given vocabulary: how many units it knows, and the counts of the others."""
    result = Scan()
    table = vocab.lookup_table(unit_space(encoding))
    known_bytes = byte_values(table[:256] > 0)
    for units in pieces(path, encoding, start, stop):
        if isinstance(units, bytes):
            unknown = units.translate(None, known_bytes)
            result.total += len(units) - len(unknown)
            result.unknown.update(unknown)
        else:
            known = table[units] > 0
            result.total += int(np.count_nonzero(known))
            result.unknown.update(units[~known].tolist())
    return result


def merge_scans(scans: list[Scan]) -> Scan:
    """The scan of consecutive parts as one: the units of each part not seen in an earlier one follow
    in their order, which is the order of first occurrence in the whole file."""
    merged = Scan()
    for part in scans:
        seen = set(merged.units)
        merged.units.extend(u for u in part.units if u not in seen)
        merged.total += part.total
        merged.unknown.update(part.unknown)
    return merged
