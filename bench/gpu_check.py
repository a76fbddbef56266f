"""The GPU side in one command: environment, CUDA tests, training-step speed, time to quality, sampling.

    python bench/gpu_check.py OUTDIR                       # on the GPU machine (about 7 minutes)
    python bench/gpu_check.py OUTDIR --device cpu --quick  # every step tiny, on a CPU (the CI test)
    python bench/gpu_check.py OUTDIR --only "time to quality"   # a rerun of one step after a fix

Runs, in order, each step guarded (a failure is recorded with its error, and the next step still runs):
1. environment: GPU, driver, torch / CUDA / cuDNN / lightning versions;
2. the tests marked `cuda` (tests/test_graph_step.py, tests/test_cuda_training.py), with
   CHARRNN_REQUIRE_CUDA=1 so that none can be skipped on the GPU;
3. bench/train_step.py --cuda_graph on 3x512, 2x512, 1x128, 1x64: plain eager PyTorch, ours eager, ours
   with the whole step as one CUDA graph, and their final losses;
4. time to quality: configs/shakespeare-gpu.yaml on the 90/10 split with and without --model.cuda_graph,
   each for --ttq_seconds of training; validation loss read back from its TensorBoard events against
   the seconds since the run's log was opened;
5. bench/sample.py: one stream and a batch, from step 4's checkpoint.
It writes OUTDIR/report.md, OUTDIR/report.json (after every step, so a killed run leaves what it had) and
OUTDIR/log.txt (every command's output); the work files (checkpoints, logs) go to --workdir. The exit
status is 0 when every step passed, 1 otherwise; the issue's targets are judged in the report and do not
change it (in --quick they are n/a: tiny runs say nothing about them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.gpu_env import environment  # noqa: E402
from bench.gpu_report import render, targets  # noqa: E402

CORPUS = ROOT / "data" / "tiny-shakespeare.txt"
CUDA_TESTS = ["tests/test_graph_step.py", "tests/test_cuda_training.py"]
GRID = ["3x512", "2x512", "1x128", "1x64"]
MARKS = (15, 30, 60)  # seconds at which time to quality is read
STEPS = ("environment", "CUDA tests", "training step", "time to quality", "sampling")


class StepError(Exception):
    """A step that did not pass: its message goes into the report."""


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.outdir)
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-check-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = self.out / "log.txt"
        self.log.write_text("")
        self.deadline = time.monotonic() + args.minutes * 60
        self.report: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "device": args.device,
                             "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                             "workdir": str(self.work), "steps": [], "targets": [], "passed": False}

    # ---- running commands ----
    def python(self, args: list[str], timeout: float, cwd: Path = ROOT, env: dict | None = None) -> str:
        """Runs ``python ARGS`` (its output appended to log.txt) and returns its stdout; a non-zero exit or
        the timeout (clipped to what is left of --minutes) is a StepError with the end of its stderr."""
        left = self.deadline - time.monotonic()
        if left < 5:
            raise StepError(f"no time left (--minutes {self.args.minutes})")
        timeout = min(timeout, left)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1", **(env or {})}
        cmd = [sys.executable, *args]
        with self.log.open("a") as log:
            log.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n")
            log.flush()
            try:
                proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as e:
                log.write(_text(e.stdout) + _text(e.stderr))
                raise StepError(f"timed out after {timeout:.0f} s: {' '.join(args[:3])} ...") from None
            log.write(proc.stdout + proc.stderr)
        if proc.returncode:  # pytest reports on stdout, the others on stderr
            tail = (proc.stderr if proc.stderr.strip() else proc.stdout)[-2500:]
            raise StepError(f"exit status {proc.returncode}: {' '.join(args[:3])} ...\n{tail}")
        return proc.stdout

    # ---- the steps ----
    def environment(self) -> dict:
        env = self.partial = environment()  # kept in the report even when the step fails
        if self.args.device == "cuda" and not env["cuda_available"]:
            raise StepError("--device cuda: torch.cuda.is_available() is False")
        return env

    def cuda_tests(self) -> dict:
        xml = self.work / "cuda-tests.xml"
        xml.unlink(missing_ok=True)  # only this run's results
        args = ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *CUDA_TESTS]
        env = {"CHARRNN_REQUIRE_CUDA": "1"} if self.args.device == "cuda" else {}
        try:
            self.python(args, timeout=300, env=env)
        finally:
            tests = _junit(xml) if xml.is_file() else []
            self.partial = {"tests": tests}
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "skipped")}
        if not tests:
            raise StepError("pytest ran no test marked cuda")
        if self.args.device == "cuda" and counts["passed"] != len(tests):
            raise StepError(f"not all passed: {counts}")
        return {**counts, "tests": tests}

    def train_step(self) -> dict:
        out = self.work / "train_step.json"
        out.unlink(missing_ok=True)
        grid, steps = ((["1x64"], ["--steps", "3", "--warmup", "2", "--batch_size", "8", "--seq_length", "16"])
                       if self.args.quick else (GRID, ["--steps", "50"]))
        self.python(["bench/train_step.py", "--device", self.args.device, "--cuda_graph", "--grid", *grid, *steps,
                     "--json", str(out), "--logdir", str(self.work / "train_step_logs")], timeout=300)
        return json.loads(out.read_text())

    def time_to_quality(self) -> dict:
        from charrnn.ckpt.load import read_checkpoint
        from charrnn.events import first_wall_time, read_scalars

        data = self.work / "ttq-data"
        data.mkdir(exist_ok=True)
        corpus = Path(shutil.copy(CORPUS, data / CORPUS.name))  # its .h5 (90/10 split) is made beside it, once
        configs, quick = ((["configs/debug.yaml"], ["--trainer.max_steps", "20"]) if self.args.quick
                          else (["configs/shakespeare.yaml", "configs/shakespeare-gpu.yaml"], []))
        seconds = self.args.ttq_seconds
        runs, errors = {}, []
        for name, extra in (("eager", []), ("graph", ["--model.cuda_graph", "true"])):
            cwd = self.work / f"ttq-{name}"
            shutil.rmtree(cwd, ignore_errors=True)  # a fresh run: lightning_logs/version_0, no old checkpoints
            cwd.mkdir()
            args = [str(ROOT / "train.py"), "fit", *(a for c in configs for a in ("--config", str(ROOT / c))),
                    "--data.test_frac", "0", "--data.input_txt", str(corpus), "--data.url", "null",
                    "--trainer.accelerator", "gpu" if self.args.device == "cuda" else "cpu",
                    "--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                    "--trainer.enable_progress_bar", "false", *quick, *extra, *self.args.ttq_args.split()]
            try:
                self.python(args, timeout=seconds + 150, cwd=cwd)
                logdir = cwd / "lightning_logs" / "version_0"
                last = next((cwd / "checkpoints").glob("*/last.ckpt"))
                runs[name] = {**_curve(read_scalars(logdir), first_wall_time(logdir)), "ckpt": str(last),
                              "steps": read_checkpoint(last)["global_step"]}
            except Exception as e:  # the other run still goes
                errors.append(f"{name}: {e}")
            self.partial = {"ttq_seconds": seconds, "runs": runs}
        if errors:
            raise StepError("\n".join(errors))
        return {"ttq_seconds": seconds, "configs": configs, "runs": runs}

    def sampling(self) -> dict:
        out = self.work / "sample.json"
        out.unlink(missing_ok=True)
        ttq = next((s["result"] for s in self.report["steps"] if s["name"] == "time to quality"), {}) or {}
        ckpt = next((r["ckpt"] for r in (ttq.get("runs") or {}).values() if r.get("ckpt")), None)
        size = ["--batches", "1", "8", "--length", "50"] if self.args.quick else ["--batches", "1", "50"]
        self.python(["bench/sample.py", "--device", self.args.device, *size, "--json", str(out),
                     *(["--ckpt", ckpt] if ckpt else [])], timeout=120)
        return json.loads(out.read_text())

    # ---- the run ----
    def step(self, name: str, fn: Callable[[], dict]) -> None:
        print(f"[gpu_check] {name} ...", flush=True)
        start, self.partial = time.monotonic(), None
        try:
            entry = {"name": name, "status": "passed", "error": None, "result": fn()}
        except Exception as e:
            detail = str(e) if isinstance(e, StepError) else traceback.format_exc(limit=-3)
            entry = {"name": name, "status": "failed", "error": detail, "result": self.partial}
        entry["seconds"] = round(time.monotonic() - start, 1)
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']} s", flush=True)
        self.report["steps"].append(entry)
        self.write()

    def write(self) -> None:
        self.report["targets"] = targets(self.report)
        self.report["passed"] = all(s["status"] == "passed" for s in self.report["steps"])
        (self.out / "report.json").write_text(json.dumps(self.report, indent=1))
        (self.out / "report.md").write_text(render(self.report))

    def run(self) -> bool:
        t0 = time.monotonic()
        for name, fn in zip(STEPS, (self.environment, self.cuda_tests, self.train_step, self.time_to_quality,
                                    self.sampling), strict=True):
            if name not in self.args.skip and (not self.args.only or name in self.args.only):
                self.step(name, fn)
        self.report["seconds"] = round(time.monotonic() - t0, 1)
        self.write()
        return self.report["passed"]


def _curve(scalars: dict, t0: float) -> dict:
    """Validation loss against seconds since the log was opened: the points, the best, and the best
    reached by each of MARKS."""
    val = [(round(p.wall_time - t0, 1), p.step, p.value) for p in scalars.get("val/loss", [])]
    if not val:
        raise StepError("no val/loss in the run's events")
    best = min(val, key=lambda v: v[2])
    at = {str(m): min((v[2] for v in val if v[0] <= m), default=None) for m in MARKS}
    rates = [p.value for p in scalars.get("train/chars_per_sec", [])]
    return {"val": val, "best": best[2], "best_at_s": best[0], "best_step": best[1], "at": at,
            "chars_per_sec": round(statistics.median(rates)) if rates else None}


def _junit(path: Path) -> list[dict]:
    tests = []
    for case in ET.parse(path).iter("testcase"):
        outcome = next((tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None), "passed")
        detail = case.find(outcome) if outcome != "passed" else None
        tests.append({"name": f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}",
                      "outcome": {"failure": "failed", "error": "failed"}.get(outcome, outcome),
                      "seconds": float(case.get("time", 0)),
                      "message": (detail.get("message") or "")[:500] if detail is not None else None,
                      "properties": {p.get("name"): _number(p.get("value")) for p in case.iter("property")}})
    return tests


def _number(value: str | None) -> float | str | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", help="where report.md, report.json and log.txt are written")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="every step tiny (debug config, a few steps): the plumbing")
    p.add_argument("--workdir", help="checkpoints and logs of the runs (default: a new directory in $TMPDIR)")
    p.add_argument("--ttq_seconds", type=int, help="training time of each time-to-quality run (default 100; quick 5)")
    p.add_argument("--ttq_args", default="", help="more train.py flags for the time-to-quality runs")
    p.add_argument("--minutes", type=float, default=8.0, help="the whole check ends by then (commands are cut)")
    p.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to leave out, e.g. 'CUDA tests'")
    p.add_argument("--only", nargs="*", default=[], choices=STEPS, help="run just these steps (a rerun after a fix)")
    args = p.parse_args()
    if args.ttq_seconds is None:
        args.ttq_seconds = 5 if args.quick else 100
    if args.ttq_seconds < 1 or args.minutes <= 0:
        p.error("--ttq_seconds must be at least 1 and --minutes more than 0")
    if not CORPUS.is_file():
        print(f"error: {CORPUS} is missing: copy tiny-shakespeare there (bench/README.md)", file=sys.stderr)
        raise SystemExit(2)
    check = Check(args)
    passed = check.run()
    print(f"[gpu_check] {'all steps passed' if passed else 'some steps FAILED'}: {check.out / 'report.md'}")
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
