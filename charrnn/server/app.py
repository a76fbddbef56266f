"""The FastAPI application: routes, JSON errors (never a traceback), request-size and CORS policy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charrnn import __version__
from charrnn.server import api, rnn_writer
from charrnn.server.capacity import Busy, Capacity, ClientGone
from charrnn.server.context import ServerContext
from charrnn.server.loading import ServedModel
from charrnn.server.options import CompletionRule, Limits
from charrnn.server.query import QueryError
from charrnn.server.workers import WorkerError

log = logging.getLogger("charrnn.server")
WORKER_START_TIMEOUT = 300.0  # seconds for every worker process to load the model


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error is JSON with a ``message`` (what rnn-writer shows); successful replies have none."""
    return JSONResponse({"message": message}, status_code=status, headers=headers)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with a JSON 413, whether announced or streamed, and
    bodies that take more than ``timeout`` seconds to arrive with a JSON 408.

    (The request line and headers are bounded by the HTTP parser, see ``cli.py``.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_big = error(413, f"request body is larger than this server's limit of {self.max_bytes} bytes "
                             "(--max-request-bytes)")
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await too_big(scope, receive, send)
        body, more = b"", True
        end = asyncio.get_running_loop().time() + self.timeout
        while more:  # read it all first (it is small), so the app never sees a partial body
            try:
                message = await asyncio.wait_for(receive(), end - asyncio.get_running_loop().time())
            except TimeoutError:
                late = error(408, f"the request body did not arrive within {self.timeout:g} s (--read-timeout)",
                             {"Connection": "close"})
                return await late(scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QueryError)
    async def query_error(_: Request, exc: QueryError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(ClientGone)
    async def gone(_: Request, exc: ClientGone) -> JSONResponse:
        return error(499, str(exc))  # nobody reads it: for the access log

    @app.exception_handler(WorkerError)
    async def worker_failed(_: Request, exc: WorkerError) -> JSONResponse:
        log.error("generation failed: %s", exc)
        return error(503, f"the generation worker failed ({exc}); try again", {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, _validation_message(exc))  # without the input, which may be megabytes

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error(500, "internal error; the server log has the details")


def create_app(model: ServedModel, rule: CompletionRule | None = None, limits: Limits | None = None,
               cors_origins: Sequence[str] = (), int8: bool = False, torch_threads: int = 1) -> FastAPI:
    """The server for ``model``.

    Args:
        model: the network and vocabulary every request samples from.
        rule: the completion rule of ``GET /generate`` (torch-rnn-server's by default).
        limits: request bounds, deadline and concurrency.
        cors_origins: origins allowed to call from a browser page elsewhere; none by default.
        int8: sample with 8-bit integer products (see :mod:`charrnn.stepper`).
        torch_threads: torch threads in each worker process.

    The ``limits.workers`` worker processes start here, each given ``model`` (not its file, which may
    change while the server runs); the app answers once they all have.
    """
    rule, limits = rule or CompletionRule(), limits or Limits()
    capacity = Capacity(model, limits.workers, limits.max_pending, int8, torch_threads, limits.worker_grace)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(capacity.wait_ready, WORKER_START_TIMEOUT)
            yield
        finally:
            capacity.shutdown()

    app = FastAPI(title="charrnn", version=__version__, lifespan=lifespan,
                  description="Character-level RNN autocomplete: the rnn-writer protocol (`GET /generate`), "
                              "a JSON API (`POST /v1/generate`) and a writing page (`/write`).")
    app.state.context = ServerContext(model, rule, limits, capacity)
    _install_error_handlers(app)
    app.include_router(rnn_writer.router)
    app.include_router(api.router)
    page = files("charrnn.server").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/write", response_class=HTMLResponse, summary="A writing page with Tab completion",
             tags=["writing page"])
    async def write() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes, timeout=limits.read_timeout)
    return app
