"""The tuner's benchmark: search, then train the tuned overlay and the default config for the same budget.

    python bench/tune.py                                            # tiny-shakespeare: 30 min of search, 5 of training
    python bench/tune.py --corpus data/linux.txt --train_budget 3m --search_budget 15m
    python bench/tune.py --train_budget 45s --search_budget 6m --out bench-tune/short --trainer.limit_val_batches 10

Four steps, each a command a user runs, their output in ``OUT/log.txt``:

1. ``python -m charrnn.tune --config CONFIG [--data.input_txt CORPUS] --train_budget T --search_budget S``
   (study and trials under ``OUT/search``), timed;
2. ``train.py fit --config CONFIG --config OUT/search/tuned.yaml``: the tuned settings trained from scratch;
3. ``train.py fit --config CONFIG --trainer.max_steps N``: the config's own settings for the steps the same
   budget gives them (N measured by the tuner's own rule, on this machine, now);
4. with ``--shipped``, the config exactly as it is (for tiny-shakespeare: the hand-tuned default, 1.43).

Each training's best validation loss, its steps and its training time (from its TensorBoard log: the first
event, just before the sanity check, to the last) go side by side into ``OUT/report.md`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIT = [sys.executable, str(ROOT / "train.py"), "fit"]
QUIET = ["--samples.every_n_steps", "0", "--trainer.enable_progress_bar", "false"]


def run(cmd: list[str], log: Path) -> float:
    """Runs ``cmd`` (output appended to ``log``); its wall time in seconds. Fails on a non-zero exit."""
    start = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.monotonic() - start


def trained(logdir: Path) -> dict:
    """A training's best validation loss, steps and seconds from its TensorBoard events."""
    from charrnn.events import first_wall_time, read_scalars

    version = sorted(logdir.glob("lightning_logs/version_*"))[-1]
    scalars = read_scalars(version)
    val = scalars["val/loss"]
    last = max(p.wall_time for series in scalars.values() for p in series)
    return {"val_loss": min(p.value for p in val), "last_val_step": max(p.step for p in val) + 1,
            "train_seconds": round(last - first_wall_time(version), 1), "curve": [(p.step + 1, p.value) for p in val]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "shakespeare.yaml"))
    p.add_argument("--corpus", help="another text file (--data.input_txt); default: the config's")
    p.add_argument("--train_budget", default="5m")
    p.add_argument("--search_budget", default="30m")
    p.add_argument("--space", action="append", default=[], help="the tuner's --space files")
    p.add_argument("--shipped", action="store_true", help="also train the config exactly as it is")
    p.add_argument("--out", type=Path, default=ROOT / "bench-tune")
    args, extra = p.parse_known_args(argv)  # other flags go to every train.py fit (and to the search's trials)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    data = (["--data.input_txt", args.corpus, "--data.url", "null"] if args.corpus else []) + extra
    search = out / "search"
    tune = [sys.executable, "-m", "charrnn.tune", "--config", args.config, "--train_budget", args.train_budget,
            "--search_budget", args.search_budget, "--out", str(search), "--study", out.name, *data,
            *[a for f in args.space for a in ("--space", f)]]
    figures: dict = {"machine": platform.processor() or platform.machine(), "command": " ".join(tune)}
    figures["search_seconds"] = round(run(tune, log), 1)
    tuned_yaml = search / "tuned.yaml"
    report = json.loads((search / "report.json").read_text())
    base = next((t for t in report["trials"] if t["baseline"] and t["max_steps"]), None)

    rows = {}
    overlay = ["--config", str(tuned_yaml)]
    same = (["--trainer.max_steps", str(base["max_steps"]), "--trainer.val_check_interval",
             str(base["val_check_interval"]), "--trainer.check_val_every_n_epoch", "null"] if base else None)
    runs = {"tuned": overlay, "default, same budget": same,
            "default as shipped": [] if args.shipped else None}
    for name, flags in runs.items():
        if flags is None:
            continue
        work = out / name.replace(" ", "-").replace(",", "")
        cmd = [*FIT, "--config", args.config, *flags, *data, *QUIET, "--trainer.default_root_dir", str(work),
               "--checkpoint.dirpath", str(work / "checkpoints")]
        wall = run(cmd, log)
        rows[name] = {**trained(work), "wall_seconds": round(wall, 1), "command": " ".join(cmd)}
    figures["runs"] = rows
    figures["tuned"] = yaml.safe_load(tuned_yaml.read_text())
    (out / "report.json").write_text(json.dumps(figures, indent=1))
    lines = [f"# Tuning benchmark: {args.corpus or args.config}", "",
             f"Search: `{figures['command']}` took {figures['search_seconds'] / 60:.1f} min; "
             f"{len(report['trials'])} trials.", "",
             "| training | best val loss | last validation at step | training time | wall time |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['val_loss']:.4f} | {r['last_val_step']} | {r['train_seconds']:.0f} s | "
                     f"{r['wall_seconds']:.0f} s |")
    lines += ["", "Tuned overlay:", "", "```yaml", tuned_yaml.read_text().rstrip(), "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
