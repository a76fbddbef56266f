"""What the .json records about how its pair was made (under ``charrnn``), so that a corpus whose text or
settings changed is made again: the text's SHA-256 and every setting that changes the output."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from charrnn.vocab import Vocab

SPLITS = ("train", "val", "test")
SHOWN_UNKNOWN = 20  # characters outside a given vocabulary: the most common, named in the report and the .json


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks; recorded in the .json to notice a changed corpus."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def vocab_digest(vocab: Vocab) -> str:
    """SHA-256 of a vocabulary's tokens in index order: what decides how a text is encoded with it."""
    return hashlib.sha256("\n".join(vocab.tokens).encode("utf-8", "surrogatepass")).hexdigest()


def made_with(encoding: str, val_frac: float, test_frac: float, vocab: Vocab | None) -> dict[str, object]:
    """Every setting that changes what :func:`~charrnn.preprocess.preprocess` writes, as the .json records it
    (beside the text's SHA-256): files made with other settings must be made again. ``vocab`` is the given
    vocabulary (None: the text's own). ``unknown`` is not among them: it changes the output only through the
    characters left out, which the .json records (``unknown``), so that a cached pair can be checked again."""
    return {"encoding": encoding, "val_frac": val_frac, "test_frac": test_frac,
            "vocab_sha256": None if vocab is None else vocab_digest(vocab)}


def record(source_sha256: str, made: dict[str, object], unknown: Counter[int],
           sizes: tuple[int, ...]) -> dict[str, object]:
    """The .json's ``charrnn`` object: the text's SHA-256, the settings it was made with, the characters left
    out (their count and the most common) and the size of each split."""
    return {
        "source_sha256": source_sha256,
        **made,
        "unknown": {"count": unknown.total(), "most_common": unknown.most_common(SHOWN_UNKNOWN)},
        "splits": dict(zip(SPLITS, sizes)),
    }
