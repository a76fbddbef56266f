"""The query string of ``GET /generate``, read from its raw bytes.

rnn-writer sends ``start_text`` as JavaScript's ``encodeURIComponent`` makes it and accepts a reply
only when the echoed ``start_text`` decodes back to what it sent, so the echo is re-encoded the same
way (for encodeURIComponent's own output that is the very string the client sent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# Besides letters and digits, encodeURIComponent leaves these unescaped (quote() already keeps "-._~").
_URI_COMPONENT_SAFE = "!'()*"
_WHOLE_NUMBER = re.compile(r"[0-9]+")


class QueryError(ValueError):
    """A bad query; ``status`` is the HTTP status of the answer, the message names the parameter."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def encode_uri_component(text: str) -> str:
    """What JavaScript's ``encodeURIComponent(text)`` returns."""
    return quote(text, safe=_URI_COMPONENT_SAFE)


def parse_query(raw: bytes) -> dict[str, list[bytes]]:
    """The still-encoded values of each (decoded) parameter name, in order."""
    params: dict[str, list[bytes]] = {}
    for part in raw.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            params.setdefault(unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace"), []).append(value)
    return params


def decode_component(name: str, raw: bytes) -> str:
    """The text of one value: ``+`` is a space (form encoding), ``%XX`` a byte, the bytes UTF-8.

    A ``%`` that does not start an escape (``%ZZ``) stands for itself, as most servers read it.
    """
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as e:
        raise QueryError(f"{name} is not UTF-8 once percent-decoded (byte 0x{e.object[e.start]:02X}); "
                         "encode it with encodeURIComponent") from None


def only_value(params: dict[str, list[bytes]], name: str) -> bytes | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise QueryError(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


@dataclass(frozen=True)
class GenerateQuery:
    """A valid ``GET /generate`` query.

    Args:
        start_text: the decoded prime.
        echo: ``start_text`` as encodeURIComponent writes it, for the reply.
        n: completions wanted, capped at the server's maximum.
    """

    start_text: str
    echo: str
    n: int


def read_generate_query(raw: bytes, max_n: int, default_n: int, max_start_text: int) -> GenerateQuery:
    """Checks and decodes the query of ``GET /generate``; raises QueryError naming what is wrong."""
    params = parse_query(raw)
    encoded = only_value(params, "start_text")
    if encoded is None:
        raise QueryError("start_text is missing: ask GET /generate?start_text=<encodeURIComponent(text)>&n=<1..10>")
    if len(encoded) > 12 * max_start_text:  # 12 = the longest escape of one character, %XX%XX%XX%XX
        raise QueryError(f"start_text is longer than the server's limit of {max_start_text} characters "
                         "(--max-start-text); send the last part of the text", status=413)
    start_text = decode_component("start_text", encoded)
    if len(start_text) > max_start_text:
        raise QueryError(f"start_text has {len(start_text)} characters, more than the server's limit of "
                         f"{max_start_text} (--max-start-text); send the last part of the text", status=413)
    n_raw = only_value(params, "n")
    n = default_n
    if n_raw is not None:
        n_text = decode_component("n", n_raw).strip()
        digits = n_text.lstrip("0")
        if not _WHOLE_NUMBER.fullmatch(n_text) or not digits:
            shown = n_text if len(n_text) <= 20 else n_text[:20] + "..."
            raise QueryError(f"n={shown!r} is not a whole number ≥1; ask for 1 to {max_n} completions")
        n = max_n if len(digits) > 6 else min(int(digits), max_n)  # larger values are capped
    return GenerateQuery(start_text, encode_uri_component(start_text), n)
