"""Where the repository and the files tests read from it are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEBUG = str(ROOT / "configs" / "debug.yaml")
CORPUS_NAME = "tiny-shakespeare.txt"
