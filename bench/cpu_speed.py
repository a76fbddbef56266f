"""CPU training speed of the default config, measured the way this noisy shared machine allows.

    python bench/cpu_speed.py                                   # fp32 against bf16-mixed, 3 alternations
    python bench/cpu_speed.py --variants bf16-mixed "bf16-mixed:--model.model_type lstm" --quality_steps 0

Three figures, side by side in one run:

1. the machine's GEMM peak: fp32 and bf16 matrix products (2048x512x1024) with the training's thread
   count, in GFLOP/s;
2. throughput: each variant (a ``--trainer.precision`` value, plus any extra train.py flags after a
   colon) trains the default config for ``--speed_steps`` steps in a fresh process, the variants
   alternating for ``--rounds`` rounds; the median characters per second of each, and its ratio to the
   first variant (alternating keeps a burst of load on the machine from favouring one). The step's
   achieved FLOP/s (the recurrent layers' and the output layer's matrix products, forward and backward,
   for the variant's own cell and shape) is set against the peak;
3. quality: each variant trains ``--quality_steps`` steps from the same seed on the default split
   (deterministic for a given variant and machine), validating every ``--quality_every`` steps; the
   validation losses, the first step at which each reaches ``--target``, and the time to it:
   steps x characters per step / characters per second (its throughput from part 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "shakespeare.yaml"
CORPUS = ROOT / "data" / "tiny-shakespeare.txt"


def gemm_gflops(dtype_name: str, threads: int, seconds: float = 2.0) -> float:
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(2048, 512, dtype=dtype), torch.randn(512, 1024, dtype=dtype)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 512 * 1024 * n / (time.perf_counter() - start) / 1e9


GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def step_flops(shape: dict, vocab: int = 65) -> float:
    """Multiply-adds of the matrix products in one training step, x2 for FLOPs, x3 for forward + backward."""
    hidden, layers = shape["rnn_size"], shape["num_layers"]
    chars = shape["batch_size"] * shape["seq_length"]
    recurrent = sum((shape["wordvec_size"] if i == 0 else hidden) + hidden for i in range(layers))
    return 2 * 3 * chars * (recurrent * GATES[shape["model_type"]] * hidden + hidden * vocab)


def variant_shape(cfg: dict, extra: list[str]) -> dict:
    """The config's model and batch shape, with a variant's ``--model.X``/``--data.X`` flags applied."""
    shape = {k: cfg["model"][k] for k in ("model_type", "wordvec_size", "rnn_size", "num_layers")}
    shape |= {k: cfg["data"][k] for k in ("batch_size", "seq_length")}
    words = [part for word in extra for part in (word.split("=", 1) if word.startswith("--") else [word])]
    for flag, value in zip(words, words[1:]):  # "--data.batch_size 64" and "--data.batch_size=64" alike
        key = flag.removeprefix("--").rsplit(".", 1)[-1]
        if flag.startswith("--") and key in shape:
            shape[key] = value if key == "model_type" else int(value)
    return shape


def train(work: Path, precision: str, steps: int, extra: list[str], validate_every: int) -> dict:
    """One train.py run in ``work``; its chars/s (after the first logged window) and (step, val loss)s."""
    from charrnn.events import read_scalars

    run = work / f"run-{time.monotonic_ns()}"
    run.mkdir()
    (run / "data").mkdir()
    (run / "data" / CORPUS.name).symlink_to(CORPUS.resolve())
    for suffix in (".h5", ".json"):  # preprocessed once, shared
        shared = work / f"corpus{suffix}"
        if shared.exists():
            (run / "data" / f"{CORPUS.stem}{suffix}").symlink_to(shared)
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(CONFIG), "--trainer.precision", precision,
           "--trainer.max_steps", str(steps), "--samples.every_n_steps", "0",
           "--checkpoint.every_n_train_steps", "0", "--best_checkpoints.save_top_k", "0",
           "--trainer.val_check_interval", str(validate_every or steps), "--trainer.enable_progress_bar", "false",
           *extra]
    if not validate_every:
        cmd += ["--trainer.limit_val_batches", "0"]
    subprocess.run(cmd, cwd=run, check=True, capture_output=True, text=True)
    for suffix in (".h5", ".json"):
        made, shared = run / "data" / f"{CORPUS.stem}{suffix}", work / f"corpus{suffix}"
        if not shared.exists() and made.is_file() and not made.is_symlink():
            made.rename(shared)
    scalars = read_scalars(next((run / "lightning_logs").iterdir()))
    rates = [p.value for p in scalars.get("train/chars_per_sec", [])][1:]  # the first window holds the warm-up
    val = scalars.get("val/loss", [])
    return {"chars_per_sec": statistics.median(rates) if rates else float("nan"),
            "val": [(p.step + 1, p.value) for p in val]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["32-true", "bf16-mixed"],
                   help="--trainer.precision values; a variant may add flags after a colon: 'bf16-mixed:--x 1'")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--speed_steps", type=int, default=120)
    p.add_argument("--quality_steps", type=int, default=600, help="0 skips the quality part")
    p.add_argument("--quality_every", type=int, default=200, help="validate every N steps of the quality runs")
    p.add_argument("--target", type=float, default=1.44, help="the validation loss whose time is reported")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the GEMM peak (default: torch's)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if not CORPUS.is_file():
        print(f"error: {CORPUS} is missing; put tiny-shakespeare there first", file=sys.stderr)
        return 2

    import torch
    import yaml

    from charrnn.kernel_choice import cpu_description

    print(f"CPU: {cpu_description()}")
    threads = args.threads or torch.get_num_threads()
    peak = {d: gemm_gflops(d, threads) for d in ("float32", "bfloat16")}
    print(f"GEMM 2048x512x1024, {threads} threads: fp32 {peak['float32']:.1f} GFLOP/s, "
          f"bf16 {peak['bfloat16']:.1f} GFLOP/s ({peak['bfloat16'] / peak['float32']:.2f}x); "
          f"bf16 natively supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")

    cfg = yaml.safe_load(CONFIG.read_text())
    variants = [(v.split(":", 1)[0], v.split(":", 1)[1].split() if ":" in v else []) for v in args.variants]
    figures: dict = {"peak_gflops": peak, "threads": threads, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speeds: dict[str, list[float]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            for name, (precision, extra) in zip(args.variants, variants):
                rate = train(work, precision, args.speed_steps, extra, validate_every=0)["chars_per_sec"]
                speeds[name].append(rate)
                print(f"round {r + 1}: {name:<24} {rate:,.0f} chars/s", flush=True)
        base = statistics.median(speeds[args.variants[0]])
        print(f"\nthroughput (median of {args.rounds}), and the step's matrix FLOP/s against the fp32 peak:")
        for name, (_, extra) in zip(args.variants, variants):
            rate, shape = statistics.median(speeds[name]), variant_shape(cfg, extra)
            achieved = rate / (shape["batch_size"] * shape["seq_length"]) * step_flops(shape) / 1e9
            figures["variants"][name] = {"chars_per_sec": rate, "ratio": rate / base, "gflops": achieved}
            print(f"  {name:<24} {rate:,.0f} chars/s  {rate / base:.2f}x  {achieved:.1f} GFLOP/s "
                  f"({achieved / peak['float32']:.0%} of fp32 peak, {achieved / peak['bfloat16']:.0%} of bf16)")
        if args.quality_steps:
            print(f"\nvalidation loss every {args.quality_every} steps of {args.quality_steps} (default split, "
                  f"same seed), and the time to {args.target} at the throughput above:")
            for name, (precision, extra) in zip(args.variants, variants):
                val = train(work, precision, args.quality_steps, extra, args.quality_every)["val"]
                shape, rate = variant_shape(cfg, extra), figures["variants"][name]["chars_per_sec"]
                reached = next((step for step, loss in val if loss <= args.target), None)
                seconds = reached * shape["batch_size"] * shape["seq_length"] / rate if reached else None
                figures["variants"][name] |= {"val": val, "steps_to_target": reached, "seconds_to_target": seconds}
                curve = ", ".join(f"{loss:.4f} ({step})" for step, loss in val)
                when = f"step {reached}, {seconds:.0f} s" if reached else "not reached"
                print(f"  {name:<24} {curve}; {args.target}: {when}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
