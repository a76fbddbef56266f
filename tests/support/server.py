"""Helpers for the server tests: a tiny trained checkpoint and the real server in a subprocess."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import torch
import torch.nn.functional as F

from tests.support.paths import ROOT
from tests.support.processes import free_port

# Short sentences that end in [.!?] after a few words, so the legacy rule accepts what the model writes.
CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak. We know it well.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved, resolved! Let us kill him now.\n\n"
) * 30
_CHECKPOINTS: dict[str, Path] = {}


def train_tiny_checkpoint(path: Path, text: str, steps: int = 80, seed: int = 0) -> Path:
    """A 1x64 LSTM fitted to ``text`` in a second or two, saved as a training checkpoint would be."""
    from charrnn.model import CharRNN

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster for a model this small, and on a busy machine
    torch.manual_seed(seed)
    model = CharRNN(vocab=list(dict.fromkeys(text)), rnn_size=64, num_layers=1, wordvec_size=16)
    data = torch.tensor(model.vocab.encode(text))
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-2)
    seq, batch = 64, 16
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s:s + seq] for s in starts])  # (B, T)
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        logits, _ = model.net(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def lowercase_checkpoint(directory: Path) -> Path:
    """One lowercase model per test session (like torch-rnn-server's), trained on first use."""
    if "lower" not in _CHECKPOINTS:
        _CHECKPOINTS["lower"] = train_tiny_checkpoint(directory / "lower.ckpt", CORPUS.lower())
    return _CHECKPOINTS["lower"]


@contextmanager
def running_server(ckpt: Path, *flags: str, log: Path | None = None, port: int | None = None,
                   timeout: float = 60.0) -> Iterator[str]:
    """``python -m charrnn.serve`` on a free loopback port; yields its base URL once it answers."""
    port = port or free_port()
    args = [sys.executable, "-m", "charrnn.serve", "--ckpt", str(ckpt), "--port", str(port), *flags]
    log = log or ckpt.parent / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"server did not answer within {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_error(reply: httpx.Response, status: int) -> str:
    """An error reply as rnn-writer needs it: JSON with a ``message``, and no traceback."""
    assert reply.status_code == status, reply.text[:500]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"message"} and body["message"], body
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return body["message"]


def raw_get(base: str, target: str, headers: dict[str, str] | None = None, timeout: float = 60) -> httpx.Response:
    """GET exactly ``target`` (httpx would re-encode it, and refuses queries over 64 kB)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("GET", target, headers={"Accept": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return httpx.Response(reply.status, headers=reply.getheaders(), content=reply.read())
    finally:
        conn.close()


def worker_pids(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def server_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"charrnn.serve" in args and port.encode() in args:
            return int(cmdline.parent.name)
    raise AssertionError(f"no server process for {url}")


def wait_for_pending(url: str, count: int) -> None:
    end = time.monotonic() + 30
    while httpx.get(f"{url}/health").json()["pending"] != count:
        assert time.monotonic() < end, f"never saw {count} pending generations"
        time.sleep(0.02)
