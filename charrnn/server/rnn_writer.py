"""torch-rnn-server's protocol, as the rnn-writer editor plugin speaks it.

``GET /`` must answer JSON. ``GET /generate?start_text=...&n=...`` answers ``{"start_text", "completions",
"time"}``; the client shows any reply holding a ``message`` key as an error, so only errors have one.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from charrnn import __version__
from charrnn.server.context import ServerContext, get_context
from charrnn.server.generation import legacy_prime
from charrnn.server.query import read_generate_query

router = APIRouter(tags=["rnn-writer protocol"])
Context = Annotated[ServerContext, Depends(get_context)]

_QUERY_DOC = [
    {"name": "start_text", "in": "query", "required": True, "schema": {"type": "string"},
     "description": "the text before the cursor, as encodeURIComponent writes it (rnn-writer sends the last 48 "
                    "characters); echoed back in that form"},
    {"name": "n", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
     "description": "completions wanted (default 1; more than the server's maximum, 10 by default, are capped)"},
]


@router.get("/", summary="Service description (rnn-writer checks that this is JSON)")
async def root(ctx: Context) -> dict[str, object]:
    return {
        "service": "charrnn",
        "version": __version__,
        "model": ctx.model.describe(),
        "endpoints": {"legacy": "/generate", "api": "/v1/generate", "health": "/health", "docs": "/docs",
                      "write": "/write"},
    }


@router.get("/generate", summary="Completions of start_text under the server's completion rule",
            openapi_extra={"parameters": _QUERY_DOC})
async def generate(request: Request, ctx: Context) -> dict[str, object]:
    # The query is read from its raw bytes: the echo must keep the client's encoding, and a bad or
    # repeated parameter gets an answer of its own rather than a generic validation error.
    started = time.perf_counter()
    limits = ctx.limits
    query = read_generate_query(request.scope.get("query_string", b""), limits.max_n, limits.default_n,
                                limits.max_start_text)
    prime = legacy_prime(ctx.model.vocab, query.start_text, ctx.rule, limits.prime_window)
    completions = await ctx.capacity.run("completions", limits.deadline, request.receive, prime=prime, n=query.n,
                                         rule=ctx.rule, seed=secrets.randbits(63))
    return {"start_text": query.echo, "completions": completions, "time": f"{time.perf_counter() - started:.2f}"}
