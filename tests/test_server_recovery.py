"""The server recovers, or says it cannot: workers keep the model the server started with whatever
happens to its file, a hung worker is replaced by each request's deadline plus a margin, a worker that
cannot start fails its requests and /health says so, and SIGTERM always ends the server."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from charrnn.server import capacity as capacity_module
from charrnn.server.app import create_app
from charrnn.server.loading import load_served_model
from charrnn.server.options import Limits
from tests.support.server import (
    CORPUS,
    assert_error,
    lowercase_checkpoint,
    raw_get,
    running_server,
    server_pid,
    train_tiny_checkpoint,
    wait_for_pending,
    worker_pids,
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lowercase_checkpoint(tmp_path_factory.mktemp("model"))


def api(url: str, timeout: float = 60, **body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/generate", json=body, timeout=timeout)


def new_workers(url: str, old: list[int], timeout: float = 60) -> list[int]:
    """The server's worker pids once they differ from ``old`` and the pool is whole again."""
    end = time.monotonic() + timeout
    while True:
        pids = worker_pids(server_pid(url))
        if pids and not set(pids) & set(old) and httpx.get(f"{url}/health").status_code == 200:
            return pids
        assert time.monotonic() < end, f"workers {old} were not replaced"
        time.sleep(0.1)


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except OSError:
        return True


def test_workers_serve_the_model_the_server_started_with_whatever_happens_to_its_file(ckpt, tmp_path):
    served = tmp_path / "last.ckpt"
    shutil.copy(ckpt, served)
    ask = {"prime": "all:", "n": 2, "length": 60, "seed": 7}
    with running_server(served, "--workers", "1") as url:
        expected = api(url, **ask).json()["completions"]
        served.unlink()  # top-k rotation deleted it
        old = worker_pids(server_pid(url))
        os.kill(old[0], signal.SIGKILL)
        old = new_workers(url, old)
        assert api(url, **ask).json()["completions"] == expected
        # Another run overwrote the file with a different model (another vocabulary, uppercase).
        train_tiny_checkpoint(served, CORPUS.upper(), steps=2, seed=1)
        os.kill(old[0], signal.SIGKILL)
        new_workers(url, old)
        assert api(url, **ask).json()["completions"] == expected
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["serving"] == 1 and health["problem"] is None


def test_a_worker_that_stops_answering_is_replaced_and_sigterm_still_ends_the_server(ckpt):
    flags = ("--workers", "1", "--deadline", "0.5", "--worker-grace", "1.5", "--max-length", "1000000")
    with running_server(ckpt, *flags) as url:
        pid = server_pid(url)
        stopped = worker_pids(pid)
        os.kill(stopped[0], signal.SIGSTOP)
        started = time.monotonic()
        reply = api(url, length=1_000_000)
        took = time.monotonic() - started
        assert "did not answer within 2.0 s" in assert_error(reply, 503)
        assert 1.9 < took < 6, took  # its deadline plus the grace, not forever
        assert exited(stopped[0])
        new_workers(url, stopped)
        assert api(url, prime="all:", length=20, seed=1).status_code == 200
        assert httpx.get(f"{url}/health").json()["status"] == "ok"

        # Stop the new worker too, with a request waiting on it, and ask the server to end.
        again = worker_pids(pid)
        os.kill(again[0], signal.SIGSTOP)
        replies: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: replies.append(raw_get(url, "/generate?start_text=all%3A&n=3")))
        waiting.start()
        wait_for_pending(url, 1)
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while not exited(pid):
            assert time.monotonic() < end, "the server did not end on SIGTERM"
            time.sleep(0.1)
        waiting.join(10)
        assert not waiting.is_alive()
        assert "worker" in assert_error(replies[0], 503)
        assert all(exited(p) for p in again + worker_pids(pid))


def test_a_worker_that_cannot_start_fails_its_requests_and_health_says_so(ckpt, monkeypatch):
    faulthandler.dump_traceback_later(300, exit=True)  # in-process requests have no timeout: never hang the suite
    try:
        cannot_start(ckpt, monkeypatch)
    finally:
        faulthandler.cancel_dump_traceback_later()


def cannot_start(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_served_model(ckpt)
    app = create_app(model, limits=Limits(workers=2, max_pending=4, deadline=0.5))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").json()["status"] == "ok"
        capacity = app.state.context.capacity
        good = capacity._model_bytes
        capacity._model_bytes = b"not a pickle"  # as if a replacement could not start (out of memory, say)
        monkeypatch.setattr(capacity_module, "RETRY_START", 600.0)  # no new attempt, however slow the machine

        os.kill(capacity._workers[0].process.pid, signal.SIGKILL)
        started = time.monotonic()
        while (health := client.get("/health").json())["status"] != "degraded" or health["starting"]:
            assert time.monotonic() - started < 60, health
            time.sleep(0.1)
        assert health["serving"] == 1 and "could not start" in health["problem"]
        assert client.get("/generate?start_text=all%3A&n=2").status_code == 200  # the other worker serves

        os.kill(capacity._workers[1].process.pid, signal.SIGKILL)
        started = time.monotonic()
        while True:  # a request meets the dead worker, or its replacement, which fails to start
            reply = client.get("/generate?start_text=all%3A&n=2")
            message = assert_error(reply, 503)
            if "could not start" in message:
                break
            assert time.monotonic() - started < 60, message
        # The message may name worker 0's failed start while worker 1's replacement is still starting.
        while (health := client.get("/health")).json()["status"] == "starting":
            assert time.monotonic() - started < 60, health.json()
            time.sleep(0.1)
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        assert health.json()["status"] == "unavailable" and health.json()["serving"] == 0
        assert "could not start" in health.json()["problem"]
        started = time.monotonic()
        refused = client.post("/v1/generate", json={"prime": "all:", "length": 5})
        assert "no worker can generate" in assert_error(refused, 503)
        assert time.monotonic() - started < 1  # at once, not after a start
        assert client.get("/health").json()["pending"] == 0

        capacity._model_bytes = good  # whatever it was has passed: the next attempt starts them again
        monkeypatch.setattr(capacity_module, "RETRY_START", 0.0)
        assert client.post("/v1/generate", json={"prime": "all:", "length": 5}).status_code == 200
        started = time.monotonic()
        while client.get("/health").json()["status"] != "ok":
            assert time.monotonic() - started < 60
            time.sleep(0.1)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # shutdown


def test_ctrl_c_ends_the_server_with_hung_workers_and_answers_their_requests(ckpt, tmp_path):
    log = tmp_path / "server.log"
    with running_server(ckpt, "--workers", "2", "--deadline", "0.5", "--worker-grace", "30", log=log) as url:
        pid = server_pid(url)
        workers = worker_pids(pid)
        for p in workers:
            os.kill(p, signal.SIGSTOP)
        replies: list[httpx.Response | Exception] = []

        def ask() -> None:
            try:
                replies.append(api(url, length=50))
            except httpx.TransportError as e:  # the server closed the connection as it ended
                replies.append(e)

        waiting = [threading.Thread(target=ask) for _ in range(2)]
        for t in waiting:
            t.start()
        wait_for_pending(url, 2)
        started = time.monotonic()
        os.kill(pid, signal.SIGINT)  # what Ctrl-C sends (the workers ignore it; the server stops them)
        while not exited(pid):
            assert time.monotonic() - started < 20, "the server did not end on SIGINT"
            time.sleep(0.1)
        for t in waiting:
            t.join(10)
        assert all(exited(p) for p in workers)
        for reply in replies:  # the requests its hung workers held were answered, not left waiting
            assert isinstance(reply, httpx.Response) and "shutting down" in assert_error(reply, 503)
    assert "Traceback" not in log.read_text()


def test_a_hung_workers_slot_comes_back_even_when_its_client_has_gone(ckpt):
    flags = ("--workers", "1", "--deadline", "0.5", "--worker-grace", "1.5")
    with running_server(ckpt, *flags) as url:
        stopped = worker_pids(server_pid(url))
        os.kill(stopped[0], signal.SIGSTOP)
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET /generate?start_text=all%3A&n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for_pending(url, 1)
        started = time.monotonic()
        wait_for_pending(url, 0)  # the worker is taken for hung at the request's limit all the same
        assert time.monotonic() - started < 5
        assert exited(stopped[0])
        new_workers(url, stopped)
        assert raw_get(url, "/generate?start_text=all%3A&n=2").status_code == 200
