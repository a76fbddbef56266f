"""bench/gpu_check.py's report: the issue's targets judged from the steps' figures, and the Markdown page."""

from __future__ import annotations

from typing import Any

# (target, threshold): ours eager against plain eager PyTorch, the CUDA graph against plain eager, ...
EAGER_RATIO_MAX = 1.05  # ours eager ms / plain eager ms at 3x512
GRAPH_SPEEDUP_MIN = {"3x512": 3.0, "1x128": 4.0}  # plain eager ms / graph ms
LOSS_TOLERANCE = 0.01  # final loss of the graph run against both eager runs
BEST_VAL_MAX = 1.40  # shakespeare-gpu, 90/10 split, nats/char
VAL_AT_30S_MAX = 1.47
BF16_TOLERANCE = 0.02  # bf16-mixed against 32-true, validation loss of the CUDA tests' runs


def _result(report: dict, name: str) -> dict:
    return next((s.get("result") or {} for s in report["steps"] if s["name"] == name), {})


def _grid(report: dict) -> dict[str, dict]:
    return {row["grid"]: row for row in _result(report, "training step").get("results", [])}


def _precision_losses(report: dict) -> dict[str, float]:
    """Validation loss of each precision's run in the CUDA tests (`test_trains_resumes_and_samples[...]`)."""
    out = {}
    for test in _result(report, "CUDA tests").get("tests", []):
        if test["outcome"] == "passed" and "val_loss" in test["properties"] and "[" in test["name"]:
            out[test["name"].rsplit("[", 1)[1].rstrip("]")] = test["properties"]["val_loss"]
    return out


def targets(report: dict) -> list[dict[str, Any]]:
    """Each target with the measured value and pass / fail, or n/a (not measured; in --quick every one is
    n/a, since tiny runs on a CPU say nothing about them, though the value is still worked out)."""
    rows: list[dict[str, Any]] = []

    def add(target: str, value: str | None, ok: bool | None) -> None:
        status = "n/a" if ok is None else "pass" if ok else "fail"
        if report.get("quick") and ok is not None:
            status = "n/a (--quick)"
        rows.append({"target": target, "value": value or "not measured", "status": status})

    grid = _grid(report)
    big = grid.get("3x512")
    ratio = big["ours"]["ms_per_step"] / big["plain"]["ms_per_step"] if big else None
    add(f"ours eager ≤ {EAGER_RATIO_MAX}× plain eager at 3×512", ratio and f"{ratio:.3f}×",
        None if ratio is None else ratio <= EAGER_RATIO_MAX)
    for entry, minimum in GRAPH_SPEEDUP_MIN.items():
        row = grid.get(entry)
        speedup = row["plain"]["ms_per_step"] / row["graph"]["ms_per_step"] if row and "graph" in row else None
        add(f"CUDA graph ≥ {minimum}× plain eager at {entry.replace('x', '×')}", speedup and f"{speedup:.2f}×",
            None if speedup is None else speedup >= minimum)
    gaps = {entry: max(abs(row["graph"]["loss"] - row[i]["loss"]) for i in ("plain", "ours"))
            for entry, row in grid.items() if "graph" in row}
    worst = max(gaps.items(), key=lambda kv: kv[1]) if gaps else None
    add(f"graph final loss within {LOSS_TOLERANCE} of eager (every size)",
        worst and f"largest gap {worst[1]:.4f} ({worst[0]})", None if worst is None else worst[1] <= LOSS_TOLERANCE)

    runs = _result(report, "time to quality").get("runs", {})
    best = min(((r["best"], name) for name, r in runs.items()), default=None)
    add(f"time to quality: best validation ≤ {BEST_VAL_MAX:.2f}", best and f"{best[0]:.4f} ({best[1]})",
        None if best is None else best[0] <= BEST_VAL_MAX)
    early = min(((r["at"]["30"], name) for name, r in runs.items() if r["at"].get("30") is not None), default=None)
    add(f"time to quality: ≤ {VAL_AT_30S_MAX:.2f} within 30 s",
        f"{early[0]:.4f} ({early[1]})" if early else runs and "no validation within 30 s",
        None if not runs else early is not None and early[0] <= VAL_AT_30S_MAX)

    losses = _precision_losses(report)
    gap = abs(losses["bf16-mixed"] - losses["32-true"]) if {"bf16-mixed", "32-true"} <= losses.keys() else None
    add(f"bf16-mixed validation within {BF16_TOLERANCE} of 32-true",
        None if gap is None else f"{losses['bf16-mixed']:.4f} vs {losses['32-true']:.4f} (gap {gap:.4f})",
        None if gap is None else gap <= BF16_TOLERANCE)
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _f(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _section(step: dict) -> str:
    r = step.get("result") or {}
    name = step["name"]
    body = ""
    if name == "environment":
        body = _table(["what", "value"], [[k, v] for k, v in r.items()])
    elif name == "CUDA tests" and r.get("tests"):
        if r.get("skipped"):
            body = (f"{r['skipped']} of {len(r['tests'])} skipped, not passed: no CUDA on this machine "
                    "(on a GPU the check sets CHARRNN_REQUIRE_CUDA=1, which makes a skip a failure)\n\n")
        body += _table(["test", "outcome", "s", "val loss", "chars/s"],
                      [[t["name"], t["outcome"] + (f": {t['message']}" if t["message"] else ""), _f(t["seconds"], 1),
                        t["properties"].get("val_loss"), t["properties"].get("chars_per_sec")] for t in r["tests"]])
    elif name == "training step" and r.get("results"):
        body = (f"batch {r['batch_size']} × {r['seq_length']}, {r['steps']} timed steps after {r['warmup']}; "
                f"ms per step\n\n")
        rows = []
        for row in r["results"]:
            plain, ours, graph = row["plain"], row["ours"], row.get("graph")
            rows.append([row["grid"], _f(plain["ms_per_step"]), _f(ours["ms_per_step"]),
                         _f(ours["ms_per_step"] / plain["ms_per_step"], 3),
                         _f(graph and graph["ms_per_step"]), _f(graph and plain["ms_per_step"] / graph["ms_per_step"]),
                         "/".join(f"{row[i]['loss']:.4f}" for i in ("plain", "ours", "graph") if i in row),
                         "/".join(f"{row[i]['peak_mb']:.0f}" for i in ("plain", "ours", "graph") if i in row)])
        body += _table(["LSTM", "plain", "ours", "ours/plain", "graph", "plain/graph", "final loss p/o/g",
                        "peak MB p/o/g"], rows)
    elif name == "time to quality" and r.get("runs"):
        body = (f"{r['ttq_seconds']} s of training each ({' + '.join(r.get('configs', []))}, `--data.test_frac 0`); "
                "seconds since the run's log was opened (before the sanity check and the first step, after the "
                "data is prepared; validation and checkpoints included); at t: the best validation reached by then\n\n")
        body += _table(["run", "steps", "chars/s", "at 15 s", "at 30 s", "at 60 s", "best (s, step)"],
                       [[n, v["steps"], v["chars_per_sec"], *(_f(v["at"][k], 4) for k in ("15", "30", "60")),
                         f"{v['best']:.4f} ({v['best_at_s']} s, {v['best_step']})"] for n, v in r["runs"].items()])
        for n, v in r["runs"].items():
            body += f"\n\n{n}: " + ", ".join(f"{val:.4f} ({t} s)" for t, _, val in v["val"])
    elif name == "sampling" and r.get("results"):
        body = f"{r['parameters']:,} parameters, {r['ckpt'] or 'untrained'}, {r['length']} characters per stream\n\n"
        body += _table(["streams", "chars/s (all)", "ms/step"],
                       [[x["streams"], _f(x["chars_per_sec"], 0), _f(x["ms_per_step"])] for x in r["results"]])
    error = f"```\n{step['error'].strip()}\n```" if step.get("error") else ""
    return "\n\n".join(filter(None, [f"## {name}: {step['status']} ({step['seconds']} s)", body, error])) + "\n"


def render(report: dict) -> str:
    failed = [s["name"] for s in report["steps"] if s["status"] != "passed"]
    head = [f"# GPU check ({report['device']}{', --quick' if report['quick'] else ''})", "",
            f"`{report['command']}`, started {report['started']}"
            + (f", {report['seconds']} s in all" if "seconds" in report else ", still running"), "",
            "**All steps passed.**" if not failed else f"**Failed: {', '.join(failed)}.**", "",
            "## Targets", "", _table(["target", "measured", ""],
                                     [[t["target"], t["value"], t["status"]] for t in report["targets"]]), ""]
    return "\n".join(head) + "\n" + "\n".join(_section(s) for s in report["steps"])
