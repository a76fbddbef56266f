"""bench/gpu_check.py, the prepared GPU check: its plumbing on a CPU (`--device cpu --quick`, every step
tiny), its guard around each step, its judgement of the targets, and the gating of the `cuda` tests."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from bench import gpu_check
from bench.gpu_check import Check, StepError
from bench.gpu_report import targets
from tests.support.paths import ROOT

STEPS = ["environment", "CUDA tests", "training step", "time to quality", "sampling"]


@pytest.mark.slow
def test_the_quick_check_runs_every_step_and_reports(tmp_path, shakespeare_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(out), "--device", "cpu",
                           "--quick", "--workdir", str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, [(s["name"], s["error"]) for s in report["steps"]]
    assert [s["name"] for s in report["steps"]] == STEPS and report["passed"]
    steps = {s["name"]: s["result"] for s in report["steps"]}
    assert steps["environment"]["torch"] == torch.__version__

    tests = steps["CUDA tests"]["tests"]
    # A bound: the tests marked cuda grow with the project; the one named here is the capture's own.
    assert len(tests) >= 5 and any("32-true-graph" in t["name"] for t in tests)
    # Without CUDA none of them may count as passed: each is skipped, and says why.
    expected = "passed" if torch.cuda.is_available() else "skipped"
    assert {t["outcome"] for t in tests} == {expected}
    assert steps["CUDA tests"][expected] == len(tests)

    (row,) = steps["training step"]["results"]
    assert row["grid"] == "1x64" and {"plain", "ours", "graph"} <= row.keys()
    assert all(math.isfinite(row[i]["loss"]) and row[i]["ms_per_step"] > 0 for i in ("plain", "ours", "graph"))

    runs = steps["time to quality"]["runs"]
    assert runs.keys() == {"eager", "graph"}
    for run in runs.values():
        assert 0 < run["steps"] <= 20 and run["val"] and Path(run["ckpt"]).is_file()
        assert run["best"] == min(v for _, _, v in run["val"]) < math.log(65)
        assert all(t > 0 for t, _, _ in run["val"])  # seconds after the log was opened

    sampling = steps["sampling"]
    assert [r["streams"] for r in sampling["results"]] == [1, 8] and sampling["ckpt"] == runs["eager"]["ckpt"]

    assert len(report["targets"]) == 7
    assert {t["status"] for t in report["targets"]} <= {"n/a", "n/a (--quick)"}
    md = (out / "report.md").read_text()
    assert all(f"## {name}: passed" in md for name in STEPS) and "## Targets" in md
    if not torch.cuda.is_available():
        assert f"{len(tests)} of {len(tests)} skipped, not passed: no CUDA" in md
    assert "$ (cd" in (out / "log.txt").read_text()  # every command's output is kept


def quick_check(tmp_path: Path) -> Check:
    return Check(Namespace(outdir=str(tmp_path / "out"), workdir=str(tmp_path / "work"), device="cpu", quick=True,
                           ttq_seconds=5, ttq_args="", minutes=1.0, skip=[], only=[]))


def test_a_failing_step_is_recorded_and_the_next_ones_still_run(tmp_path, monkeypatch):
    ran = []

    def fake(name, outcome):
        def step(self):
            ran.append(name)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return step

    monkeypatch.setattr(Check, "environment", fake("environment", StepError("no GPU here")))
    monkeypatch.setattr(Check, "cuda_tests", fake("CUDA tests", {"passed": 5}))
    monkeypatch.setattr(Check, "train_step", fake("training step", ZeroDivisionError("a bug")))
    monkeypatch.setattr(Check, "time_to_quality", fake("time to quality", {"runs": {}}))
    monkeypatch.setattr(Check, "sampling", fake("sampling", {"results": []}))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", str(tmp_path / "out"), "--device", "cpu",
                                      "--workdir", str(tmp_path / "work"), "--skip", "sampling"])
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main()
    assert exit_.value.code == 1 and ran == ["environment", "CUDA tests", "training step", "time to quality"]  # --skip
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {s["name"]: (s["status"], s["error"]) for s in report["steps"]}
    assert status["environment"] == ("failed", "no GPU here")
    assert status["training step"][0] == "failed" and "ZeroDivisionError: a bug" in status["training step"][1]
    assert status["CUDA tests"] == ("passed", None) and not report["passed"]
    assert "**Failed: environment, training step.**" in (tmp_path / "out" / "report.md").read_text()

    ran.clear()  # a rerun of what failed
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", str(tmp_path / "again"), "--device", "cpu",
                                      "--workdir", str(tmp_path / "work"), "--only", "CUDA tests", "time to quality"])
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main()
    assert exit_.value.code == 0 and ran == ["CUDA tests", "time to quality"]


def test_a_command_that_fails_or_hangs_is_a_step_error_with_its_output(tmp_path):
    check = quick_check(tmp_path)
    with pytest.raises(StepError, match="exit status 1(.|\n)*bad input here"):
        check.python(["-c", "import sys; sys.exit('bad input here')"], timeout=30)
    with pytest.raises(StepError, match="timed out after 1 s"):
        check.python(["-c", "import time; print('started', flush=True); time.sleep(30)"], timeout=1)
    assert "started" in check.log.read_text()
    check.deadline = 0  # --minutes spent: nothing more starts
    with pytest.raises(StepError, match="no time left"):
        check.python(["-c", "pass"], timeout=30)


def fake_report(quick: bool = False, plain: float = 13.0, ours: float = 13.5, graph: float = 3.2,
                small_graph: float = 0.7, loss_gap: float = 0.004, best: float = 1.39, at30: float = 1.46,
                bf16: float = 1.51) -> dict:
    def row(grid, p, o, g):
        return {"grid": grid, "plain": {"ms_per_step": p, "loss": 2.0}, "ours": {"ms_per_step": o, "loss": 2.001},
                "graph": {"ms_per_step": g, "loss": 2.0 + loss_gap}}
    runs = {"graph": {"best": best, "at": {"15": 1.6, "30": at30, "60": best}},
            "eager": {"best": best + 0.02, "at": {"15": None, "30": at30 + 0.02, "60": best + 0.03}}}
    tests = [{"name": f"test_cuda_training::test_trains_resumes_and_samples[{p}]", "outcome": "passed",
              "properties": {"val_loss": v}} for p, v in (("bf16-mixed", bf16), ("32-true", 1.50))]
    return {"quick": quick, "steps": [
        {"name": "CUDA tests", "result": {"tests": tests}},
        {"name": "training step", "result": {"results": [row("3x512", plain, ours, graph),
                                                         row("1x128", 3.1, 3.2, small_graph)]}},
        {"name": "time to quality", "result": {"runs": runs}}]}


@pytest.mark.parametrize(("changes", "failing"), [
    ({}, []),
    ({"ours": 13.7}, ["ours eager"]),  # 1.054x
    ({"graph": 4.4}, ["at 3×512"]),  # 2.95x
    ({"small_graph": 0.8}, ["at 1×128"]),  # 3.9x
    ({"loss_gap": 0.012}, ["final loss"]),
    ({"best": 1.41}, ["best validation"]),
    ({"at30": 1.48}, ["within 30 s"]),
    ({"bf16": 1.521}, ["bf16-mixed"]),
])
def test_targets_are_judged_on_the_issues_thresholds(changes, failing):
    rows = targets(fake_report(**changes))
    assert len(rows) == 7
    failed = [t["target"] for t in rows if t["status"] == "fail"]
    assert len(failed) == len(failing) and all(f in t for f, t in zip(failing, failed))
    assert all(t["status"] == "pass" for t in rows if t["target"] not in failed)


def test_quick_runs_and_missing_steps_judge_nothing():
    assert {t["status"] for t in targets(fake_report(quick=True, best=9.0))} == {"n/a (--quick)"}
    rows = targets({"quick": False, "steps": [{"name": "training step", "status": "failed", "result": None}]})
    assert {(t["value"], t["status"]) for t in rows} == {("not measured", "n/a")}


def test_every_test_file_with_cuda_tests_is_in_the_check():
    marked = sorted(f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
                    if re.search(r"@pytest\.mark\.cuda\b", p.read_text()))
    assert marked == sorted(gpu_check.CUDA_TESTS)


def test_cuda_tests_fail_rather_than_skip_when_cuda_is_required():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                           "tests/test_graph_step.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "CHARRNN_REQUIRE_CUDA": "1"})
    if torch.cuda.is_available():
        assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-2000:]
    else:
        assert proc.returncode == 1 and "1 error" in proc.stdout, proc.stdout[-2000:]  # failed in its setup
        assert "CHARRNN_REQUIRE_CUDA=1 but torch.cuda.is_available() is False" in proc.stdout


def test_the_wheels_script_fetches_the_versions_tested_here():
    from importlib.metadata import requires, version

    pins = dict(re.findall(r"([\w-]+)==([\w.]+)", (ROOT / "bench" / "gpu_wheels.sh").read_text()))
    assert pins == {name: version(name) for name in pins}
    # jsonargparse and what its `signatures` extra asks for (PyYAML and typing-extensions are on the GPU machine)
    extra = {re.split(r"[<>=;! \[]", r)[0].lower() for r in requires("jsonargparse") if 'extra == "signatures"' in r}
    assert set(pins) == {"jsonargparse"} | extra


def test_device_cuda_without_cuda_fails_its_environment_step_but_keeps_what_it_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", str(tmp_path / "out"), "--device", "cuda",
                                      "--workdir", str(tmp_path / "work"), "--only", "environment"])
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main()
    (step,) = json.loads((tmp_path / "out" / "report.json").read_text())["steps"]
    env = step["result"]
    assert env["torch"] == torch.__version__ and env["cuda_available"] is torch.cuda.is_available()
    if torch.cuda.is_available():
        assert exit_.value.code == 0 and env["gpu"] == torch.cuda.get_device_name(0)
    else:
        assert exit_.value.code == 1 and step["error"] == "--device cuda: torch.cuda.is_available() is False"
