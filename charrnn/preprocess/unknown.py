"""The characters of a text outside a given vocabulary (``--vocab``): refused, or reported as left out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from charrnn.preprocess.record import SHOWN_UNKNOWN
from charrnn.preprocess.settings import PreprocessError, UnknownPolicy
from charrnn.vocab import byte_token


@dataclass(frozen=True)
class UnknownReport:
    """How characters outside a given vocabulary are reported, in the words of the command that asked.

    Args:
        source: names the text file (``--input_txt data/x.txt``).
        vocab: names the vocabulary (``--vocab v.json``).
        flag: the flag that chooses to leave them out or refuse the text (``--unknown``).
        left_out: ends the report when they are left out.
        report: where the report of the characters left out goes (default: printed unless quiet).
    """

    source: str
    vocab: str
    flag: str = "--unknown"
    left_out: str = "(left out)"
    report: Callable[[str], None] | None = None

    def message(self, unknown: Counter[int], encoding: str, total: int | None = None) -> str:
        """``total``: how many there are, when ``unknown`` holds only the most common (as the .json records)."""
        spell = byte_token if encoding == "bytes" else (lambda u: repr(chr(u)))
        shown = ", ".join(f"{spell(u)}×{n}" for u, n in unknown.most_common(SHOWN_UNKNOWN))
        return f"{total or sum(unknown.values())} characters of {self.source} are not in {self.vocab}: {shown}"

    def apply(self, unknown: Counter[int], encoding: str, policy: UnknownPolicy, say: Callable[[str], None]) -> None:
        """Refuses the text (``error``), or reports the characters that are left out of it (``drop``)."""
        message = self.message(unknown, encoding)
        if policy == "error":
            raise PreprocessError(f"{message}; pass {self.flag} drop to leave them out")
        (self.report or say)(f"{message} {self.left_out}")
