"""The JSON API: ``POST /v1/generate`` (plain sampling, every knob exposed) and ``GET /health``."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from charrnn.server.context import ServerContext, get_context
from charrnn.server.generation import Continuation

router = APIRouter(tags=["JSON API"])
Context = Annotated[ServerContext, Depends(get_context)]
SEED_MAX = 2**63 - 1
StopString = Annotated[str, Field(min_length=1, max_length=64)]


class GenerateRequest(BaseModel):
    """What to generate. The server's limits (``--max-n``, ``--max-length``, ``--max-start-text``) apply."""

    model_config = ConfigDict(extra="forbid")

    prime: str = Field("", description="text to continue; characters the model does not know are replaced by "
                                       "their other case or left out; only the last --prime-window are used")
    n: int = Field(1, ge=1, description="continuations, sampled together as one batch")
    length: int = Field(200, ge=1, description="characters (tokens) to generate per continuation")
    temperature: float = Field(1.0, ge=0, le=100, allow_inf_nan=False,
                               description="0 takes the most likely character")
    top_k: int | None = Field(None, ge=1, description="sample among the k most likely characters")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="sample among the most likely characters holding probability p; a tiny "
                                            "one takes the most likely character")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="same seed and request, same text")
    stop: Annotated[list[StopString], Field(max_length=8)] | StopString | None = Field(
        None, description="a continuation ends before the first of these strings (up to 8)")


class GenerateResponse(BaseModel):
    completions: list[Continuation] = Field(
        description="each with its finish_reason: length (all characters generated), stop (a stop string was "
                    "reached and cut off) or deadline (the server's time limit, --deadline, ended it)")
    prime: str = Field(description="the prime the model saw")
    dropped: dict[str, int] = Field(description="characters of the prime the model knows in neither case, left out")
    seed: int = Field(description="the seed used; send it again to repeat the result")
    time: float = Field(description="seconds taken")


def _refuse(field: str, message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{field}: {message}")


@router.post("/v1/generate", response_model=GenerateResponse, summary="Continuations of a prime")
async def generate(body: GenerateRequest, request: Request, ctx: Context) -> GenerateResponse:
    started = time.perf_counter()
    limits = ctx.limits
    if body.n > limits.max_n:
        raise _refuse("n", f"{body.n} is more than this server's limit of {limits.max_n} (--max-n)")
    if body.length > limits.max_length:
        raise _refuse("length", f"{body.length} is more than this server's limit of {limits.max_length} "
                                "(--max-length)")
    if len(body.prime) > limits.max_start_text:
        raise _refuse("prime", f"{len(body.prime)} characters is more than this server's limit of "
                               f"{limits.max_start_text} (--max-start-text)")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    prime, dropped = ctx.model.vocab.swap_case_or_leave_out(body.prime[-limits.prime_window:])
    seed = secrets.randbits(63) if body.seed is None else body.seed
    results = await ctx.capacity.run("continuations", limits.deadline, request.receive, prime=prime, n=body.n,
                                     length=body.length, temperature=body.temperature, top_k=body.top_k,
                                     top_p=body.top_p, seed=seed, stop=stop)
    return GenerateResponse(
        completions=results,
        prime=prime, dropped=dict(dropped), seed=seed, time=round(time.perf_counter() - started, 4),
    )


class Health(BaseModel):
    status: Literal["ok", "degraded", "starting", "unavailable"] = Field(
        description="ok: every worker can generate; degraded: some can; starting: none yet, one is starting; "
                    "unavailable: none can (HTTP 503 for these two)")
    problem: str | None = Field(description="why a worker cannot generate, if one cannot")
    model: dict[str, object]
    pending: int = Field(description="generations running or waiting now")
    max_pending: int
    workers: int
    serving: int = Field(description="workers that can generate now")
    starting: int = Field(description="workers starting (replacements)")


@router.get("/health", response_model=Health, summary="Whether the server can generate, and its load",
            responses={503: {"model": Health, "description": "no worker can generate now"}})
async def health(ctx: Context) -> Health | JSONResponse:
    capacity = ctx.capacity
    pool = capacity.status()
    if pool.serving == capacity.workers:
        status = "ok"
    elif pool.serving:
        status = "degraded"
    else:
        status = "starting" if pool.starting else "unavailable"
    report = Health(status=status, problem=pool.problem, model=ctx.model.describe(), pending=capacity.pending,
                    max_pending=capacity.max_pending, workers=capacity.workers, serving=pool.serving,
                    starting=pool.starting)
    if pool.serving:
        return report
    return JSONResponse(report.model_dump(), status_code=503, headers={"Retry-After": "1"})
