"""What to run next, as the user types it: in this checkout, or on the host when the program runs in a
container of compose.yaml.

Inside a container the program sees the container's paths and addresses (``/data/...``, ``0.0.0.0``),
which the user cannot type on the host. compose.yaml says where it runs: ``CHARRNN_LAUNCHER`` is
``compose`` (``docker compose run``), or ``make`` when ``make ... DOCKER=1`` started it;
``CHARRNN_PUBLIC_URL`` is the address the host reaches the server at (its published port).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

DATA = PurePosixPath("/data")  # the data directory's mount point in compose.yaml


def launcher() -> str | None:
    """``make`` or ``compose`` inside compose.yaml's containers; None here (or for a value it does not know)."""
    value = os.environ.get("CHARRNN_LAUNCHER", "").strip()
    return value if value in ("make", "compose") else None


def sample_command(ckpt: str | os.PathLike) -> str:
    """The command that prints a sample from ``ckpt`` (a path as this process sees it)."""
    how = launcher()
    if how is None:
        return f"python sample.py --ckpt {ckpt} --length 500"
    inside = PurePosixPath(os.path.abspath(ckpt))
    if how == "make":  # the Makefile reads a relative CKPT in DATA_DIR, an absolute one in the container
        return f"make sample DOCKER=1 CKPT={inside.relative_to(DATA) if inside.is_relative_to(DATA) else inside}"
    return f"CHARRNN_CKPT={inside} docker compose run --rm sample"


def server_url(host: str, port: int) -> str:
    """The server's address for a browser: the published one in a container, else ``host:port``."""
    public = os.environ.get("CHARRNN_PUBLIC_URL", "").strip()
    if public:
        return public.rstrip("/")
    return f"http://{host}:{port}"

