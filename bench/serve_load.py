"""A bounded load test of the autocomplete server with rnn-writer-shaped requests.

    python bench/serve_load.py --ckpt checkpoints/shakespeare/last.ckpt            # starts its own server
    python bench/serve_load.py --url http://127.0.0.1:8080                          # or one already running

Each of ``--clients`` clients sends ``GET /generate?start_text=<48 characters>&n=5`` as soon as its last
answer came back, with primes cut from ``--corpus`` at random, until ``--duration`` seconds have passed
or ``--max-requests`` were sent. Reports latency percentiles, throughput and errors (transport errors,
statuses other than 200, replies with a ``message``). Traffic only ever goes to this machine's loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from charrnn.kernel_choice import cpu_description

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--ckpt", help="start `python -m charrnn.serve --ckpt CKPT` on a free loopback port")
    target.add_argument("--url", help="a server already running on this machine")
    p.add_argument("--server-args", default="", help="more flags for the server started with --ckpt")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load, at most")
    p.add_argument("--max-requests", type=int, default=2000, help="requests, at most")
    p.add_argument("--warmup", type=int, default=16, help="requests sent (and not counted) before measuring")
    p.add_argument("--n", type=int, default=5, help="completions per request (rnn-writer asks for 5)")
    p.add_argument("--prime-chars", type=int, default=48, help="prime length (rnn-writer sends 48)")
    p.add_argument("--corpus", default=str(ROOT / "data" / "tiny-shakespeare.txt"), help="text the primes come from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as an error")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.url and urlsplit(args.url).hostname not in LOOPBACK:
        p.error(f"--url {args.url}: only loopback addresses ({', '.join(sorted(LOOPBACK))}) may be loaded")
    if args.clients < 1 or args.max_requests < 1 or args.duration <= 0:
        p.error("--clients, --max-requests and --duration must be positive")
    if not Path(args.corpus).is_file():
        p.error(f"--corpus {args.corpus} does not exist")
    return args


def start_server(ckpt: str, extra: str) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "charrnn.serve", "--ckpt", ckpt, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *extra.split()]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not answer within 120 s")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` and its child processes (the server's workers), in MiB."""
    pids = [pid] + [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _parent(p) == pid]
    total = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(total / 1024, 1) if total else None


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


async def load(args: argparse.Namespace, url: str, primes: list[str]) -> dict[str, object]:
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    short = 0
    sent = 0
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:

        async def one() -> None:
            nonlocal short
            target = f"/generate?start_text={quote(rng.choice(primes), safe='')}&n={args.n}"
            started = time.perf_counter()
            try:
                reply = await client.get(target, headers={"Accept": "application/json"})
                body = reply.json()
            except (httpx.HTTPError, ValueError) as e:
                errors[type(e).__name__] += 1
                return
            latencies.append(time.perf_counter() - started)
            if reply.status_code != 200 or "message" in body:
                errors[f"HTTP {reply.status_code}: {str(body.get('message'))[:60]}"] += 1
            elif len(body["completions"]) < args.n:
                short += 1

        for _ in range(args.warmup):
            await one()
        latencies.clear(), errors.clear()
        short = 0
        end = time.monotonic() + args.duration
        started = time.monotonic()

        async def client_loop() -> None:
            nonlocal sent
            while time.monotonic() < end and sent < args.max_requests:
                sent += 1
                await one()

        await asyncio.gather(*(client_loop() for _ in range(args.clients)))
        elapsed = time.monotonic() - started
    ms = sorted(x * 1000 for x in latencies)
    cut = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "requests": sent, "seconds": round(elapsed, 2), "requests_per_s": round(sent / elapsed, 2),
        "p50_ms": round(cut[49], 1), "p95_ms": round(cut[94], 1), "p99_ms": round(cut[98], 1),
        "max_ms": round(ms[-1], 1) if ms else None, "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "replies_with_fewer_than_n": short,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    text = Path(args.corpus).read_text(encoding="utf-8")
    rng = random.Random(args.seed)
    primes = [text[i:i + args.prime_chars] for i in (rng.randrange(len(text) - args.prime_chars) for _ in range(1000))]
    proc, url = start_server(args.ckpt, args.server_args) if args.ckpt else (None, args.url)
    try:
        rss_before = rss_mib(proc.pid) if proc else None
        result = asyncio.run(load(args, url, primes))
        health = httpx.get(f"{url}/health").json()
        result |= {
            "server_rss_mib_before": rss_before, "server_rss_mib_after": rss_mib(proc.pid) if proc else None,
            "model": health.get("model"), "clients": args.clients, "n": args.n, "prime_chars": args.prime_chars,
            "server_args": args.server_args, "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()}",
            "cpu": cpu_description(),
        }
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
