"""Two workers of python -m charrnn.tune sharing one study in a real PostgreSQL server: every trial run once.

The server's URL comes from CHARRNN_TEST_POSTGRES_URL (``bash .ci/postgres`` starts Debian's PostgreSQL and
prints it; .ci/run does so). Without it the test is skipped on a developer's machine, and fails under CI
(``CI=true``), so that CI never passes without having run it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest

from tests.support.paths import DEBUG
from tests.support.processes import finish, start
from tests.support.texts import TINY_TEXT
from tests.support.tune import SPACE

URL_VARIABLE = "CHARRNN_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{URL_VARIABLE} is not set under CI: .ci/run must start the server (bash .ci/postgres)")
    pytest.skip(f"{URL_VARIABLE} is not set: `export {URL_VARIABLE}=$(bash .ci/postgres)` starts a server")


@pytest.mark.slow
def test_two_workers_share_one_study_and_run_each_trial_once(tmp_path: Path, postgres_url: str):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    (tmp_path / "space.yaml").write_text(SPACE)
    study = f"test-{uuid.uuid4().hex[:12]}"

    def worker(name: str) -> subprocess.Popen:
        return start(["-m", "charrnn.tune", "--config", DEBUG, "--space", "space.yaml", "--train_budget", "1s",
                      "--search_budget", "1h", "--trials", "2", "--study", study, "--storage", postgres_url,
                      "--worker", name, "--out", f"out-{name}", "--data.input_txt", "tiny.txt", "--data.url", "null",
                      "--trainer.limit_val_batches", "2"], tmp_path)

    a, b = worker("a"), worker("b")  # at once
    ended = [((done := finish(proc, check=False, timeout=900)).stderr, done.returncode) for proc in (a, b)]
    trials = optuna.load_study(study_name=study, storage=postgres_url).trials
    try:
        states = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
        for err, code in ended:
            assert code == 0, (states, err[-3000:])
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]
        assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials), [t.state.name for t in trials]
        assert sorted(t.user_attrs["worker"] for t in trials) == ["a", "a", "b", "b"]
        # The config's own settings were queued once, by the worker that created the study, and ran once.
        assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
        for t in trials:  # each trial trained in its own worker's directory, once
            runs = list((tmp_path / f"out-{t.user_attrs['worker']}" / "trials" / f"trial-{t.number:04d}")
                        .glob("lightning_logs/version_*"))
            assert len(runs) == 1, (t.number, runs)
            other = "b" if t.user_attrs["worker"] == "a" else "a"
            assert not (tmp_path / f"out-{other}" / "trials" / f"trial-{t.number:04d}").exists()
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    finally:
        optuna.delete_study(study_name=study, storage=postgres_url)
