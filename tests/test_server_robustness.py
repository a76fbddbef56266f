"""The server under pressure: isolation of concurrent requests, 503 beyond capacity, deadlines, binding,
CORS, and command-line errors that name the flag or file at fault."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from charrnn.server.cli import build_parser, main
from tests.support.processes import free_port
from tests.support.server import (
    assert_error,
    lowercase_checkpoint,
    raw_get,
    running_server,
    server_pid,
    wait_for_pending,
    worker_pids,
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lowercase_checkpoint(tmp_path_factory.mktemp("model"))


def api(url: str, **body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/generate", json=body, timeout=60)


def test_concurrent_requests_keep_their_own_state_and_random_stream(ckpt):
    seeds = [1, 2, 3, 4] * 3
    with running_server(ckpt, "--workers", "4") as url:
        alone = {s: api(url, prime="all:", n=2, length=150, seed=s).json()["completions"] for s in seeds[:4]}
        assert len({str(c) for c in alone.values()}) == 4
        with ThreadPoolExecutor(len(seeds)) as pool:
            together = list(pool.map(lambda s: api(url, prime="all:", n=2, length=150, seed=s), seeds))
        assert [r.json()["completions"] for r in together] == [alone[s] for s in seeds]
        with ThreadPoolExecutor(8) as pool:
            legacy = list(pool.map(lambda _: raw_get(url, "/generate?start_text=first%20citizen%3A&n=5"), range(8)))
        assert all(r.status_code == 200 and len(r.json()["completions"]) == 5 for r in legacy)


def test_beyond_capacity_the_answer_is_503_at_once_and_deadlines_end_work(ckpt):
    flags = ("--workers", "1", "--max-pending", "2", "--max-length", "1000000", "--deadline", "1.5")
    with running_server(ckpt, *flags) as url:
        replies: list[httpx.Response] = []
        long = [threading.Thread(target=lambda: replies.append(api(url, length=1_000_000))) for _ in range(2)]
        long[0].start()
        wait_for_pending(url, 1)  # running
        long[1].start()
        wait_for_pending(url, 2)  # waiting for the one worker
        started = time.monotonic()
        for refused in (api(url, length=5), raw_get(url, "/generate?start_text=a&n=1")):
            assert "--max-pending" in assert_error(refused, 503)
            assert refused.headers["retry-after"] == "1"
        assert time.monotonic() - started < 1.0  # refused at once, not queued
        for t in long:
            t.join(30)
        assert [r.status_code for r in replies] == [200, 200]
        assert all(c["finish_reason"] == "deadline" for r in replies for c in r.json()["completions"])
        wait_for_pending(url, 0)
        assert api(url, length=5).status_code == 200


def test_a_rule_that_accepts_nothing_still_answers(ckpt):
    with running_server(ckpt, "--min-words", "40", "--max-words", "50", "--max-attempts", "1000000",
                        "--deadline", "0.5") as url:
        started = time.monotonic()
        reply = raw_get(url, "/generate?start_text=all%3A&n=10")
        assert reply.status_code == 200 and reply.json()["completions"] == []
        assert time.monotonic() - started < 5


def test_a_worker_that_dies_fails_its_requests_and_is_replaced(ckpt):
    with running_server(ckpt, "--workers", "1", "--max-length", "1000000", "--deadline", "30") as url:
        workers = worker_pids(server_pid(url))
        assert len(workers) == 1
        replies: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: replies.append(api(url, length=1_000_000)))
        waiting.start()
        wait_for_pending(url, 1)
        os.kill(workers[0], signal.SIGKILL)
        waiting.join(20)
        assert "worker" in assert_error(replies[0], 503)
        wait_for_pending(url, 0)
        again = api(url, prime="all:", length=20, seed=1)  # a new worker starts and answers
        assert again.status_code == 200 and len(again.json()["completions"][0]["text"]) == 20
        new = worker_pids(server_pid(url))
        assert len(new) == 1 and new != workers  # the one worker, started again


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_binds_loopback_only_by_default_and_cors_is_off(ckpt):
    # Every 127.x address reaches this machine: a listener on all interfaces answers 127.0.0.2 too.
    with socket.create_server(("0.0.0.0", 0)) as everywhere:
        assert not refused("127.0.0.2", everywhere.getsockname()[1])
    port = free_port()
    with running_server(ckpt, port=port) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert refused("127.0.0.2", port)
        reply = raw_get(url, "/", headers={"Origin": "http://elsewhere.test"})
        assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers
    assert build_parser().parse_args(["--ckpt", "x.ckpt"]).host == "127.0.0.1"


def test_cors_origins_are_allowed_when_given(ckpt):
    with running_server(ckpt, "--cors-origins", "http://allowed.test, http://also.test") as url:
        allowed = raw_get(url, "/", headers={"Origin": "http://also.test"})
        assert allowed.headers["access-control-allow-origin"] == "http://also.test"
        other = raw_get(url, "/", headers={"Origin": "http://elsewhere.test"})
        assert "access-control-allow-origin" not in other.headers


def test_command_line_errors_name_the_flag_or_file(tmp_path, capsys):
    import socket

    in_use = socket.create_server(("127.0.0.1", 0))  # a port another program listens on
    missing = tmp_path / "missing.ckpt"
    assert main(["--ckpt", str(missing)]) == 2
    assert f"--ckpt checkpoint {missing} does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["--ckpt", str(garbage)]) == 2
    assert f"--ckpt checkpoint {garbage} " in capsys.readouterr().err
    for flags, words in [(["--default-n", "11"], "--default-n"), (["--temperatures", "a,b"], "--temperatures"),
                         (["--min-words", "5", "--max-words", "4"], "--min-words"), (["--port", "70000"], "--port"),
                         (["--temperatures", "nan"], "--temperatures"), (["--temperatures", ","], "--temperatures"),
                         (["--temperatures", "0.5,inf"], "temperature inf"),
                         (["--temperatures", "0.5,-1"], "temperature -1"),
                         (["--device", "bogus"], "--device bogus"), (["--device", "meta"], "--device meta"),
                         (["--torch-threads", str(10**21)], "--torch-threads"), (["--deadline", "inf"], "--deadline"),
                         (["--deadline", "nan"], "--deadline"), (["--host", "no-such-host.invalid"], "--host"),
                         (["--host", "192.0.2.1"], "cannot listen there"),
                         (["--port", str(in_use.getsockname()[1])], "cannot listen there")]:
        with pytest.raises(SystemExit) as e:
            main(["--ckpt", str(missing), *flags])
        assert e.value.code == 2 and words in capsys.readouterr().err


def test_an_export_is_served_like_its_checkpoint(ckpt, tmp_path):
    from charrnn.export import export

    exported = export(ckpt, tmp_path / "export")
    ask = {"prime": "all:", "n": 2, "length": 40, "seed": 5}
    with running_server(ckpt) as url:
        expected = api(url, **ask).json()["completions"]
    with running_server(exported.parent) as url:  # the export's directory, as users pass it
        assert raw_get(url, "/").json()["model"]["rnn_size"] == 64
        assert api(url, **ask).json()["completions"] == expected


def test_without_the_serve_extra_the_command_says_what_to_install():
    import subprocess
    import sys

    blocked = ("import sys; sys.modules['fastapi'] = None; "  # as if the extra were not installed
               "from charrnn.serve import main; sys.exit(main(['--ckpt', 'x']))")
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fastapi" in proc.stderr and ".[serve]" in proc.stderr
