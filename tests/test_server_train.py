"""Train with the real command, then serve what it wrote: the whole path a user takes."""

from __future__ import annotations

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.processes import run_ok
from tests.support.server import CORPUS, raw_get, running_server


@pytest.mark.slow
def test_a_checkpoint_written_by_train_py_is_served(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS)
    args = [str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--data.input_txt",
            "corpus.txt", "--data.url", "null", "--trainer.max_steps", "10", "--trainer.enable_progress_bar", "false"]
    run_ok(args, tmp_path, timeout=600)
    ckpt = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    # A mixed-case model: served without lowercasing, and with a rule loose enough for 10 steps of training.
    with running_server(ckpt, "--no-lowercase", "--min-words", "0", "--max-chars", "20") as url:
        info = raw_get(url, "/").json()["model"]
        assert info["has_uppercase"] and info["rnn_size"] == 32
        reply = raw_get(url, "/generate?start_text=First%20Citizen%3A&n=3")
        assert reply.status_code == 200 and len(reply.json()["completions"]) == 3
        body = httpx.post(f"{url}/v1/generate", json={"prime": "First", "length": 10, "seed": 1}).json()
        assert body["prime"] == "First" and len(body["completions"][0]["text"]) == 10
