"""Peak memory and time for a corpus larger than memory is comfortable with: preprocess a generated
corpus of ``--size_mb`` MB, then train the first ``--steps`` steps on it with ``--num_workers`` data
workers.

    python bench/big_corpus.py --size_mb 1024 --workdir /tmp

Each step runs in a fresh process that reports its own peak RSS (ru_maxrss) and, for training, the
largest peak among its DataLoader workers (they are its children). The splits are memory-mapped, so
a worker's RSS holds only the pages it has read, not a copy of the split. Files go to a temporary
directory under ``--workdir`` and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.preprocess import SEED_TEXT, make_corpus  # noqa: E402
from charrnn.kernel_choice import cpu_description  # noqa: E402

# Runs inside a fresh child: the step, then its own peak RSS and its children's (data workers).
CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
if sys.argv[1] == "preprocess":
    from charrnn.preprocess import main
    main(sys.argv[2:])
else:
    from charrnn.cli import cli_main
    cli_main(sys.argv[2:])
mb = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": mb(resource.RUSAGE_SELF),
                  "children_peak_rss_mb": mb(resource.RUSAGE_CHILDREN)}))
"""


def run(step: str, args: list[str], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, step, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{step} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size_mb", type=int, default=1024, help="size of the generated corpus")
    p.add_argument("--workdir", type=Path, default=None, help="where the temporary directory goes (needs ~2x size)")
    p.add_argument("--steps", type=int, default=20, help="training steps")
    p.add_argument("--num_workers", type=int, default=2, help="DataLoader workers")
    args = p.parse_args()
    if not SEED_TEXT.is_file():
        sys.exit(f"{SEED_TEXT} is missing: run `make train` once (it downloads it) or copy it there")
    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory(prefix="charrnn-big-", dir=args.workdir) as tmp:
        work = Path(tmp)
        corpus, h5, js = work / "corpus.txt", work / "corpus.h5", work / "corpus.json"
        t = time.perf_counter()
        make_corpus(corpus, args.size_mb)
        size_mb = corpus.stat().st_size / 2**20
        print(f"generated {size_mb:.0f} MB in {time.perf_counter() - t:.0f} s", flush=True)
        rows = [("preprocess", run("preprocess", ["--input_txt", str(corpus), "--output_h5", str(h5),
                                                 "--output_json", str(js), "--quiet"], work))]
        corpus.unlink()  # training reads the .h5 alone
        train = ["fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--data.input_txt", "null",
                 "--data.input_h5", str(h5), "--data.input_json", str(js), "--data.num_workers", str(args.num_workers),
                 "--trainer.max_steps", str(args.steps), "--trainer.enable_progress_bar", "false"]
        rows.append((f"train {args.steps} steps, {args.num_workers} workers", run("train", train, work)))
        print(f"h5 {h5.stat().st_size / 2**20:.0f} MB; train split memory-mapped")
        print(f"{'step':<28}{'seconds':>9}{'peak RSS MB':>13}{'largest child MB':>18}")
        for name, r in rows:
            print(f"{name:<28}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['children_peak_rss_mb']:>18.0f}")


if __name__ == "__main__":
    main()
