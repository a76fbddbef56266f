"""Training-step cost of charrnn (CharRNN + CharDataModule through a Lightning Trainer) against a
minimal plain-PyTorch loop of the same network, on torch-rnn's benchmark grid, side by side.

    python bench/train_step.py                       # LSTM 1/2/3 layers x 64/128/256/512, batch 50, seq 50
    python bench/train_step.py --grid 3x512 --steps 30 --device cuda
    python bench/train_step.py --grid 3x512 1x128 --device cuda --cuda_graph   # + ours with --model.cuda_graph
    python bench/train_step.py --grid 1x64 --json out.json                     # also the figures as JSON

Each measurement runs in a fresh process (so peak memory is its own) on tiny-shakespeare (data/),
with the same data, optimizer (fused Adam, lr 2e-3), gradient clipping (5) and carried hidden state. It
times steps after a warm-up and prints ms/iteration, characters/s, peak memory and the ratio
ours/plain for each configuration. With ``--cuda_graph`` it also runs ours with the whole step as one
CUDA graph and prints its speed-up over plain eager PyTorch, and the final loss of each run (the same
data and initial weights, so the curves should agree).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from charrnn.kernel_choice import cpu_description

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "tiny-shakespeare.txt"
GRID = [f"{layers}x{size}" for layers in (1, 2, 3) for size in (64, 128, 256, 512)]


def peak_memory_mb(device: str) -> float:
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_plain(layers: int, size: int, args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from charrnn.data import CharDataModule
    from charrnn.net import CharRNNNet, detach_state
    from charrnn.net_spec import Architecture

    dm = CharDataModule(str(CORPUS), batch_size=args.batch_size, seq_length=args.seq_length)
    dm.setup("fit")
    batches = dm.datasets["train"]
    torch.manual_seed(0)  # the same initial weights as ours
    net = CharRNNNet(Architecture(len(dm.vocab), "lstm", args.wordvec_size, size, layers)).to(args.device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, fused=True)
    state, start = None, 0.0
    for k in range(args.warmup + args.steps):
        if k == args.warmup:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = (t.to(args.device, non_blocking=True) for t in batches[k % len(batches)])
        logits, state = net(x, state)
        state = detach_state(state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_memory_mb(args.device), "loss": float(loss)}


def run_ours(layers: int, size: int, args: argparse.Namespace, cuda_graph: bool = False) -> dict:
    import lightning as L
    import torch

    from charrnn.data import CharDataModule
    from charrnn.model import CharRNN

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *_: object) -> None:
            if trainer.global_step == args.warmup:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

        def on_train_end(self, trainer: L.Trainer, *_: object) -> None:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start

    dm = CharDataModule(str(CORPUS), batch_size=args.batch_size, seq_length=args.seq_length)
    torch.manual_seed(0)
    model = CharRNN(dm.vocab, "lstm", args.wordvec_size, size, layers, lr_schedule="constant", cuda_graph=cuda_graph)
    clock = Clock()
    trainer = L.Trainer(accelerator="cuda" if args.device.startswith("cuda") else "cpu", devices=1,
                        max_steps=args.warmup + args.steps, limit_val_batches=0, gradient_clip_val=5.0,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        logger=L.pytorch.loggers.TensorBoardLogger(args.logdir), log_every_n_steps=50,
                        callbacks=[clock])
    trainer.fit(model, dm)
    return {"seconds": clock.seconds, "peak_mb": peak_memory_mb(args.device),
            "loss": float(trainer.callback_metrics["train/loss"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", nargs="+", default=GRID, help="LAYERSxSIZE entries")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--seq_length", type=int, default=50)
    p.add_argument("--wordvec_size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--logdir", default="/tmp/charrnn-bench-logs")
    p.add_argument("--cuda_graph", action="store_true", help="also time ours with --model.cuda_graph true")
    p.add_argument("--json", help="also write the figures here (rewritten after each configuration)")
    p.add_argument("--child", nargs=3, metavar=("IMPL", "LAYERS", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        impl, layers, size = args.child[0], int(args.child[1]), int(args.child[2])
        runs = {"plain": run_plain, "ours": run_ours, "graph": partial(run_ours, cuda_graph=True)}
        print(json.dumps(runs[impl](layers, size, args)))
        return
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} is missing: run `make train` once (it downloads it) or copy it there")
    chars = args.batch_size * args.seq_length * args.steps
    print(f"CPU: {cpu_description()}")
    print(f"device {args.device}; batch {args.batch_size}, seq {args.seq_length}, wordvec {args.wordvec_size}; "
          f"{args.steps} timed steps after {args.warmup}")
    print(f"{'LSTM':>6}{'plain ms/it':>13}{'ours ms/it':>12}{'ratio':>7}{'plain chars/s':>15}{'ours chars/s':>14}"
          f"{'plain MB':>10}{'ours MB':>9}" + (f"{'graph ms/it':>13}{'plain/graph':>13}{'graph MB':>10}"
                                                f"{'final loss plain/ours/graph':>30}" if args.cuda_graph else ""))
    impls = ("plain", "ours", "graph") if args.cuda_graph else ("plain", "ours")
    table = []
    for entry in args.grid:
        layers, size = (int(v) for v in entry.split("x"))
        results = {}
        for impl in impls:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", impl, str(layers), str(size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{entry} {impl} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[impl]["ms_per_step"] = 1000 * results[impl]["seconds"] / args.steps
        if args.json:
            table.append({"grid": entry, **results})
            Path(args.json).write_text(json.dumps({"device": args.device, "steps": args.steps, "warmup": args.warmup,
                                                   "batch_size": args.batch_size, "seq_length": args.seq_length,
                                                   "results": table}, indent=1))
        plain, ours = (1000 * results[i]["seconds"] / args.steps for i in ("plain", "ours"))
        line = (f"{entry:>6}{plain:>13.2f}{ours:>12.2f}{ours / plain:>7.2f}"
                f"{chars / results['plain']['seconds']:>15,.0f}"
                f"{chars / results['ours']['seconds']:>14,.0f}{results['plain']['peak_mb']:>10.0f}"
                f"{results['ours']['peak_mb']:>9.0f}")
        if args.cuda_graph:
            graph = 1000 * results["graph"]["seconds"] / args.steps
            losses = "/".join(f"{results[i]['loss']:.4f}" for i in impls)
            line += f"{graph:>13.2f}{plain / graph:>13.2f}{results['graph']['peak_mb']:>10.0f}{losses:>30}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
