"""The writing page in headless Chromium: Tab suggests, up/down cycle, Enter or → accepts, Esc cancels.

Needs Debian's ``chromium`` and ``npm ci`` in tests/browser (CI installs both); without them the test
fails and says what to install, it does not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.server import lowercase_checkpoint, running_server

BROWSER_DIR = ROOT / "tests" / "browser"


def test_writing_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    node = shutil.which("node")
    missing = [what for what, ok in [
        (f"chromium at {chromium} (apt-get install chromium, or set CHROMIUM)", Path(chromium).is_file()),
        ("node (apt-get install nodejs npm)", node is not None),
        ("playwright-core (cd tests/browser && npm ci)", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
    ] if not ok]
    if missing:
        pytest.fail("the browser test needs " + "; ".join(missing))
    shot = tmp_path / "write.png"
    with running_server(lowercase_checkpoint(tmp_path)) as url:
        run = subprocess.run([node, str(BROWSER_DIR / "write_page.mjs"), url, str(shot)], cwd=BROWSER_DIR,
                             capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": chromium})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["ok"] is True
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CHARRNN_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CHARRNN_KEEP_SCREENSHOT"])
