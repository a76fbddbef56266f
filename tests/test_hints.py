"""What the programs tell the user to run next: this checkout's commands, or, inside compose.yaml's
containers, what to type on the host (CHARRNN_LAUNCHER, CHARRNN_PUBLIC_URL)."""

from __future__ import annotations

import pytest

from charrnn import hints


@pytest.mark.parametrize(
    "launcher, ckpt, expected",
    [
        (None, "checkpoints/debug/last.ckpt", "python sample.py --ckpt checkpoints/debug/last.ckpt --length 500"),
        ("make", "/data/checkpoints/debug/best.ckpt", "make sample DOCKER=1 CKPT=checkpoints/debug/best.ckpt"),
        ("make", "/app/exports/x", "make sample DOCKER=1 CKPT=/app/exports/x"),  # outside the data directory
        ("compose", "/data/checkpoints/debug/last.ckpt",
         "CHARRNN_CKPT=/data/checkpoints/debug/last.ckpt docker compose run --rm sample"),
        ("something else", "ckpt/last.ckpt", "python sample.py --ckpt ckpt/last.ckpt --length 500"),
    ],
)
def test_sample_command(monkeypatch: pytest.MonkeyPatch, launcher: str | None, ckpt: str, expected: str) -> None:
    if launcher is None:
        monkeypatch.delenv("CHARRNN_LAUNCHER", raising=False)
    else:
        monkeypatch.setenv("CHARRNN_LAUNCHER", launcher)
    assert hints.sample_command(ckpt) == expected


def test_a_relative_path_in_a_container_is_read_from_its_working_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CHARRNN_LAUNCHER", "compose")
    monkeypatch.chdir(tmp_path)  # /data in the containers; here anywhere else
    assert hints.sample_command("checkpoints/x.ckpt") == \
        f"CHARRNN_CKPT={tmp_path}/checkpoints/x.ckpt docker compose run --rm sample"


def test_server_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARRNN_PUBLIC_URL", raising=False)
    assert hints.server_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    monkeypatch.setenv("CHARRNN_PUBLIC_URL", "http://127.0.0.1:8080/")
    assert hints.server_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
