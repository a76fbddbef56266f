"""The server's start line and end: in a container it names the address the host reaches it at, and a
SIGTERM (`docker stop`, `kill`) after a clean shutdown ends it with status 0, not 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.paths import ROOT
from tests.support.processes import free_port
from tests.support.server import lowercase_checkpoint


def test_sigterm_ends_the_server_with_status_0_and_the_start_line_names_the_public_address(tmp_path: Path) -> None:
    ckpt = lowercase_checkpoint(tmp_path)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CHARRNN_PUBLIC_URL": "http://127.0.0.1:8080"}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "charrnn.serve", "--ckpt", str(ckpt), "--host", "0.0.0.0",
                                 "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        end = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (ours,) = [line for line in log.read_text().splitlines() if "writing page at" in line]
    assert ours.endswith("writing page at http://127.0.0.1:8080/write") and "0.0.0.0" not in ours, ours
