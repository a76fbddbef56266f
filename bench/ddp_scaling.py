"""Training throughput (characters per second, all processes together) with 1, 2, ... DDP processes,
each training the same per-process batch on tiny-shakespeare.

    python bench/ddp_scaling.py --devices 1 2                      # CPU processes (gloo)
    python bench/ddp_scaling.py --accelerator gpu --devices 1 2 4  # GPUs (nccl)

Each count runs in a fresh launch. On a CPU the cores are shared out: every process gets
``cores // processes`` torch threads, so on a small machine the figure shows the cost of DDP
more than its gain. The model is a 2x256 LSTM (batch 32, seq 128 per process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charrnn.kernel_choice import cpu_description

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "tiny-shakespeare.txt"


def child(args: argparse.Namespace) -> None:
    """One measurement; Lightning re-runs this command line for every extra process."""
    import lightning as L
    import torch

    from charrnn.data import CharDataModule
    from charrnn.model import CharRNN

    if args.accelerator == "cpu":
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.devices))

    class Clock(L.Callback):
        """Times the steps after ``warmup``; DDP synchronises every step, so rank 0's clock is everyone's."""

        def __init__(self) -> None:
            self.start = 0.0

        def on_train_batch_start(self, trainer: L.Trainer, *_: object) -> None:
            if trainer.global_step == args.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seconds = time.perf_counter() - self.start
            chars = (args.steps - args.warmup) * args.batch_size * args.seq_length * trainer.world_size
            if trainer.is_global_zero:
                print("RESULT " + json.dumps({"processes": trainer.world_size, "threads": torch.get_num_threads(),
                                              "chars_per_sec": chars / seconds}), flush=True)

    L.seed_everything(0, verbose=False)
    data = CharDataModule(input_txt=str(args.corpus), batch_size=args.batch_size, seq_length=args.seq_length)
    model = CharRNN(data.vocab, rnn_size=256, num_layers=2, learning_rate=3e-3)
    strategy = "ddp" if args.devices > 1 else "auto"
    trainer = L.Trainer(accelerator=args.accelerator, devices=args.devices, strategy=strategy,
                        use_distributed_sampler=False, max_steps=args.steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=5.0, callbacks=[Clock()])
    trainer.fit(model, data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    p.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    p.add_argument("--batch_size", type=int, default=32, help="streams per process")
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads per CPU process (0: cores // processes)")
    p.add_argument("--corpus", type=Path, default=None, help=argparse.SUPPRESS)  # set for the measured runs
    args = p.parse_args()
    if args.corpus is not None:
        args.devices = args.devices[0]
        child(args)
        return
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} is missing: run `make train` once (it downloads it) or copy it there")
    with tempfile.TemporaryDirectory(prefix="charrnn-ddp-") as tmp:
        corpus = Path(shutil.copy(CORPUS, tmp))  # its .h5/.json are written beside it, away from data/
        print(f"CPU: {cpu_description()}")
        print(f"{'processes':>9}{'threads each':>14}{'chars/s':>11}{'vs first':>10}")
        base = None
        for n in args.devices:
            cmd = [sys.executable, os.path.abspath(__file__), "--devices", str(n), "--accelerator", args.accelerator,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size", str(args.batch_size),
                   "--seq_length", str(args.seq_length), "--threads", str(args.threads),
                   "--corpus", str(corpus)]
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"--devices {n} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1][len("RESULT "):])
            base = base or r["chars_per_sec"]
            print(f"{r['processes']:>9}{r['threads']:>14}{r['chars_per_sec']:>11.0f}{r['chars_per_sec'] / base:>10.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
