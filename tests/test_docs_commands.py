"""The documentation's runnable commands, run: README.md and docs/*.md cannot drift from the code.

A fenced ``bash`` block right after a line ``<!-- runnable -->`` is run by this test. The blocks of one
page run in order, in one fresh directory that holds the project's entry points, its configs, its callback
overlays and ``data/tiny-shakespeare.txt``, with ``python`` meaning this interpreter. They are written to
take seconds (``configs/debug.yaml``); a page's other blocks are examples and are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import CORPUS_NAME, ROOT

MARK = "<!-- runnable -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```bash\n(.*?)\n```", re.DOTALL)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert len(blocks) == text.count(MARK), f"{page.name}: a {MARK} line must be followed by a ```bash block"
    return blocks


def test_the_readme_has_runnable_commands():
    # A bound, not a count: each block is run by test_runnable_commands_of, and the README may gain more.
    assert len(runnable_blocks(ROOT / "README.md")) >= 2


def sandbox(tmp_path: Path, corpus: Path) -> dict[str, str]:
    for name in ("train.py", "sample.py", "configs", "callbacks", "bench"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "data").mkdir()
    shutil.copy(corpus, tmp_path / "data" / CORPUS_NAME)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    python = bin_dir / "python"  # a script, not a link: a link would leave this interpreter's virtualenv
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("TQDM_MINITERS", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if MARK in p.read_text(encoding="utf-8")], ids=lambda p: p.name)
def test_runnable_commands_of(page, tmp_path, shakespeare_path):
    env = sandbox(tmp_path, shakespeare_path)
    for block in runnable_blocks(page):
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{page.name}: this block failed:\n{block}\n---\n{proc.stderr[-3000:]}"
