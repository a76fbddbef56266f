"""Preprocessing speed and peak memory: charrnn's streaming preprocess against a per-character loop
like torch-rnn's scripts/preprocess.py, on generated corpora of growing size.

    python bench/preprocess.py --sizes_mb 100 500 --baseline_mb 100

Each run happens in a fresh process, so its peak RSS is its own. The children column is the largest
peak RSS among the processes it started: preprocessing's workers (one per part of the file), but
also the ``uname`` that importing h5py runs, which counts as large as the importing process was
then (about 33 MB); so it is an upper bound for a worker. Prints one table row per run and the
speed ratio ours/baseline for the sizes both ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from charrnn.kernel_choice import cpu_description

ROOT = Path(__file__).resolve().parents[1]
SEED_TEXT = ROOT / "data" / "tiny-shakespeare.txt"

# Run inside a child process: preprocess, then report the child's own peak RSS. The clock starts
# after the imports (h5py and numpy for both), so it times the work, not the interpreter's start.
CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import h5py, numpy
from charrnn.preprocess import PreprocessSettings, preprocess
from bench.preprocess import per_character_loop
t = time.perf_counter()
if sys.argv[2] == "charrnn":
    preprocess(PreprocessSettings(sys.argv[3], sys.argv[4], sys.argv[5], quiet=True))
else:
    per_character_loop(sys.argv[3], sys.argv[4], sys.argv[5])
seconds = time.perf_counter() - t
peak, children = (resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "children_peak_rss_mb": children}))
"""


def per_character_loop(input_txt: str, output_h5: str, output_json: str) -> None:
    """The straightforward algorithm: read everything, then visit every character twice in Python."""
    import h5py
    import numpy as np

    with open(input_txt, encoding="utf-8", newline="") as f:
        text = f.read()
    token_to_idx: dict[str, int] = {}
    for ch in text:
        if ch not in token_to_idx:
            token_to_idx[ch] = len(token_to_idx) + 1
    n = len(text)
    val = test = int(0.1 * n)
    arr = np.zeros(n, dtype=np.uint8 if len(token_to_idx) <= 255 else np.uint32)
    for i, ch in enumerate(text):
        arr[i] = token_to_idx[ch]
    with h5py.File(output_h5, "w") as f:
        f.create_dataset("train", data=arr[: n - val - test])
        f.create_dataset("val", data=arr[n - val - test : n - test])
        f.create_dataset("test", data=arr[n - test :])
    with open(output_json, "w") as f:
        json.dump({"token_to_idx": token_to_idx, "idx_to_token": {v: k for k, v in token_to_idx.items()}}, f)


def make_corpus(path: Path, size_mb: int) -> None:
    """Repeats tiny-shakespeare (plus a line with non-ASCII characters) up to ``size_mb`` MB."""
    seed = SEED_TEXT.read_bytes() + "Ünïcödé — “quotes” 😀\n".encode()
    with open(path, "wb") as f:
        written = 0
        while written < size_mb << 20:
            f.write(seed)
            written += len(seed)


def run(kind: str, corpus: Path, work: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), kind, str(corpus), str(work / f"{kind}.h5"),
                          str(work / f"{kind}.json")], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes_mb", type=int, nargs="+", default=[100, 500])
    p.add_argument("--baseline_mb", type=int, nargs="*", default=[100], help="sizes the slow loop also runs on")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    if not SEED_TEXT.is_file():
        sys.exit(f"{SEED_TEXT} is missing: run `make train` once (it downloads it) or copy it there")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        print(f"CPU: {cpu_description()}")
        print(f"{'impl':<22}{'MB':>6}{'seconds':>10}{'MB/s':>9}{'peak RSS MB':>13}{'children MB':>13}")
        ours: dict[int, float] = {}
        for size in sorted(set(args.sizes_mb) | set(args.baseline_mb)):
            corpus = work / f"corpus-{size}.txt"
            make_corpus(corpus, size)
            mb = corpus.stat().st_size / 2**20
            kinds = ["charrnn"] + (["per-character loop"] if size in args.baseline_mb else [])
            for kind in kinds:
                r = run("charrnn" if kind == "charrnn" else "loop", corpus, work)
                print(f"{kind:<22}{mb:>6.0f}{r['seconds']:>10.2f}{mb / r['seconds']:>9.1f}{r['peak_rss_mb']:>13.0f}"
                      f"{r['children_peak_rss_mb']:>13.0f}", flush=True)
                if kind == "charrnn":
                    ours[size] = r["seconds"]
                else:
                    print(f"{'':<22}speed ratio ours/loop at {size} MB: {r['seconds'] / ours[size]:.0f}x")
            corpus.unlink()


if __name__ == "__main__":
    main()
