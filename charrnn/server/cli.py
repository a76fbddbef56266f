"""``python -m charrnn.serve --ckpt PATH [--host 127.0.0.1] [--port 8080]``: the autocomplete server.

Speaks torch-rnn-server's protocol for the rnn-writer editor plugin (``GET /generate``), a JSON API
(``POST /v1/generate``, docs at ``/docs``) and serves a writing page at ``/write``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import socket
import sys
from dataclasses import fields
from types import FrameType

import torch
import uvicorn

from charrnn import hints
from charrnn.ckpt.load import CheckpointError
from charrnn.devices import parse_device
from charrnn.sampling import check_settings
from charrnn.server.app import create_app
from charrnn.server.capacity import Capacity
from charrnn.server.connections import guarded_protocol
from charrnn.server.loading import load_served_model
from charrnn.server.options import DEFAULT_TEMPERATURES, CompletionRule, Limits
from charrnn.stepper import choose_products, int8_available

DESCRIPTION = ("The autocomplete server: torch-rnn-server's protocol for rnn-writer (GET /generate), a JSON API "
               "(POST /v1/generate, docs at /docs) and a writing page (/write).")


def _temperatures(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one temperature")
    try:
        check_settings(values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charrnn.serve", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="the model: a training checkpoint (.ckpt), or an export "
                                                 "(model.safetensors or its directory, see charrnn.export)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 exposes the server to "
                                                        "the network (it has no authentication)")
    p.add_argument("--port", type=int, default=8080, help="port (rnn-writer's default is 8080)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads per worker process; requests are batched on --workers processes instead")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="multiply in 8-bit integers: about 3x faster on a CPU for the same text quality (on "
                        "tiny-shakespeare, +0.0001 nats/char); on by default on a CPU that supports it")
    p.add_argument("--cors-origins", default="", help="comma-separated origins whose pages may call the server "
                                                      "(e.g. http://localhost:3000); none by default")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    rule = p.add_argument_group("completion rule of GET /generate (defaults: torch-rnn-server's)")
    d = CompletionRule()
    rule.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=d.lowercase,
                      help="lowercase the prime (turn off for a model trained on mixed case)")
    rule.add_argument("--collapse-whitespace", action=argparse.BooleanOptionalAction, default=d.collapse_whitespace,
                      help="turn runs of whitespace in the prime into one space")
    rule.add_argument("--temperatures", type=_temperatures, default=DEFAULT_TEMPERATURES, metavar="T,T,...",
                      help="each completion samples at one of these, drawn at random")
    rule.add_argument("--stop-chars", default=d.stop_chars, help="a completion ends at one of these characters ...")
    rule.add_argument("--stop-after-words", type=int, default=d.stop_after_words,
                      help="... once it has more than this many words")
    rule.add_argument("--max-chars", type=int, default=d.max_chars, help="a completion ends at this length anyway")
    rule.add_argument("--min-words", type=int, default=d.min_words, help="shorter completions are sampled again")
    rule.add_argument("--max-words", type=int, default=d.max_words, help="longer completions are sampled again")
    rule.add_argument("--max-attempts", type=int, default=d.max_attempts,
                      help="a request samples at most ceil(n * oversample) * this many completions, then "
                           "answers with what it has")
    rule.add_argument("--oversample", type=float, default=d.oversample,
                      help="completions sampled at once for each one missing; the first n accepted are the "
                           "answer")

    lim = p.add_argument_group("limits")
    d2 = Limits()
    lim.add_argument("--max-n", type=int, default=d2.max_n, help="most completions per request (n is capped)")
    lim.add_argument("--default-n", type=int, default=d2.default_n, help="completions when GET /generate has no n")
    lim.add_argument("--max-start-text", type=int, default=d2.max_start_text,
                     help="longest prime accepted, in characters; longer ones are answered with 413")
    lim.add_argument("--prime-window", type=int, default=d2.prime_window,
                     help="only the last this many characters of the prime are fed to the model")
    lim.add_argument("--max-length", type=int, default=d2.max_length, help="largest length of POST /v1/generate")
    lim.add_argument("--deadline", type=float, default=d2.deadline,
                     help="seconds of sampling per request; then it answers with what it has")
    lim.add_argument("--workers", type=int, default=None,
                     help="worker processes, each stepping all of its requests together as one batch (default: "
                          "one per CPU core, up to 8; 1 with --device cuda)")
    lim.add_argument("--max-pending", type=int, default=d2.max_pending,
                     help="requests being generated at once; more are answered with 503 at once")
    lim.add_argument("--max-request-bytes", type=int, default=d2.max_request_bytes,
                     help="largest request line, headers or body")
    lim.add_argument("--worker-grace", type=float, default=d2.worker_grace,
                     help="seconds past --deadline a worker may take to answer; then it is taken for hung, "
                          "killed and replaced, and its requests get 503")
    lim.add_argument("--read-timeout", type=float, default=d2.read_timeout,
                     help="seconds a connection has to send a request's line and headers (from connecting or its "
                          "last answer), and again its body; slower ones are closed")
    lim.add_argument("--max-connections", type=int, default=d2.max_connections,
                     help="open connections; one more closes the one idle the longest, or gets 503 if none is idle")
    return p


class Server(uvicorn.Server):
    """uvicorn's server, whose shutdown (SIGTERM, Ctrl-C) lets running generations reach their deadline,
    then answers those still waiting (a hung worker's) with the JSON 503, so it never waits on a worker."""

    def __init__(self, config: uvicorn.Config, capacity: Capacity, deadline: float) -> None:
        super().__init__(config)
        self.capacity, self.deadline = capacity, deadline

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connections while the running generations end
            server.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline + 0.5
        while self.capacity.pending and loop.time() < end:
            await asyncio.sleep(0.05)
        self.capacity.abort("the server is shutting down")
        await super().shutdown(sockets)


def _pick(args: argparse.Namespace, cls: type) -> dict[str, object]:
    return {f.name: getattr(args, f.name) for f in fields(cls)}


def _open_files_for(connections: int) -> str | None:
    """Raises this process's open-file limit to fit ``connections`` (plus the server's own files) if the
    hard limit allows; the problem, if it does not."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to check
        return None
    needed = connections + 64  # worker pipes, the model, the listening socket, logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (f"--max-connections {connections} needs {needed} open files, but this process may open at most {hard} "
                "(ulimit -Hn); lower --max-connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


def _listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (a name that does not resolve, an address not of
    this machine, a port in use), found before the model is loaded; None if it can."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        return f"--host {host}: {e.strerror}"
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(address)
        except OSError as e:
            return f"--host {host} --port {port}: cannot listen there ({e.strerror})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = 1 if args.device.startswith("cuda") else Limits().workers
    try:
        rule, limits = CompletionRule(**_pick(args, CompletionRule)), Limits(**_pick(args, Limits))
    except ValueError as e:
        parser.error(str(e))
    if not 0 <= args.port < 65536:
        parser.error(f"--port {args.port} must be between 0 and 65535")
    if (problem := _listen_problem(args.host, args.port)) is not None:
        parser.error(problem)
    if (problem := _open_files_for(limits.max_connections)) is not None:
        parser.error(problem)
    if not 1 <= args.torch_threads <= 1024:
        parser.error(f"--torch-threads {args.torch_threads} must be between 1 and 1024")
    try:
        parse_device(args.device)
    except ValueError as e:
        parser.error(f"--{e}")
    try:
        model = load_served_model(args.ckpt, args.device)
    except CheckpointError as e:
        print(f"error: --ckpt {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.torch_threads)
    int8 = args.int8
    if int8 and not int8_available(args.device):
        parser.error(f"--int8: this torch build cannot multiply int8 matrices on {args.device}; use --no-int8")
    products = "int8 products (--int8)" if int8 else "float products (--no-int8)"
    if int8 is None and args.device == "cpu" and int8_available():
        choice = choose_products(model.net)
        int8, products = choice.chosen == "int8", f"{choice.chosen} products ({choice.describe()})"
    elif int8 is None:
        int8, products = False, "float products"
    origins = tuple(o.strip() for o in args.cors_origins.split(",") if o.strip())
    app = create_app(model, rule, limits, origins, int8, args.torch_threads)
    info = model.describe()
    print(f"charrnn: {info['model_type']} {info['num_layers']}x{info['rnn_size']}, {info['vocab_size']} tokens, "
          f"{products}, from {args.ckpt}; "
          f"writing page at {hints.server_url(args.host, args.port)}/write", file=sys.stderr, flush=True)
    if model.origin is not None:
        print(f"charrnn: {model.origin['summary']}", file=sys.stderr, flush=True)
    if info["has_uppercase"] and rule.lowercase:
        print("charrnn: the model knows uppercase letters but GET /generate lowercases primes (torch-rnn-server's "
              "rule); --no-lowercase keeps their case", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level,
        # Idle connections are bounded by guarded_protocol, not by uvicorn's limit_concurrency (which
        # counts them against real requests and answers in plain text); requests beyond --max-pending
        # get our JSON 503.
        http=guarded_protocol(limits.read_timeout, limits.max_connections),
        h11_max_incomplete_event_size=limits.max_request_bytes, timeout_keep_alive=5,
        timeout_graceful_shutdown=math.ceil(limits.deadline) + 3,  # a backstop: Server.shutdown answers them first
    )
    server = Server(config, app.state.context.capacity, limits.deadline)
    # uvicorn sends itself SIGTERM again once it has shut down cleanly: as an exception, not a kill (status
    # 143), so that `docker stop` and `kill` end a good run with 0.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises Ctrl-C again once it has shut down cleanly
        return 130
    except _Terminated:
        return 0 if server.started else 1
    return 0 if server.started else 1


class _Terminated(Exception):
    """SIGTERM, as raised by ``_terminated``."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


if __name__ == "__main__":
    sys.exit(main())
