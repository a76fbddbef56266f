"""Sampling speed: characters per second for 1 stream and for n streams generated as one batch.

    python bench/sample.py --ckpt checkpoints/shakespeare/last.ckpt [--device cuda]
    python bench/sample.py --rnn_size 256 --num_layers 2        # an untrained model of that shape
    python bench/sample.py --batches 1 50 --json out.json        # also the figures as JSON

Uses charrnn.sampling.stream_text, the function sample.py and the training callback share.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from charrnn.ckpt.load import read_model
from charrnn.kernel_choice import cpu_description
from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from charrnn.sampling import stream_text
from charrnn.vocab import Vocab


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="a checkpoint; without it an untrained model of the shape below")
    p.add_argument("--rnn_size", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--length", type=int, default=500, help="new characters per stream")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 5, 10, 50])
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    if args.ckpt:
        model = read_model(args.ckpt, args.device)
        net, vocab = model.net, model.vocab
    else:
        vocab = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
        net = CharRNNNet(Architecture(len(vocab), "lstm", 64, args.rnn_size, args.num_layers)).to(args.device).eval()
    params = sum(p.numel() for p in net.parameters())
    print(f"CPU: {cpu_description()}")
    print(f"device {args.device}, threads {torch.get_num_threads()}, {params:,} parameters")
    print(f"{'streams':>8}{'chars/s (all)':>15}{'chars/s per stream':>20}{'ms/step':>9}")
    rows = []
    for n in args.batches:
        list(stream_text(net, vocab, "The ", 20, num_samples=n, seed=0))  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in stream_text(net, vocab, "The ", args.length, num_samples=n, seed=0):
            pass
        dt = time.perf_counter() - t
        print(f"{n:>8}{n * args.length / dt:>15,.0f}{args.length / dt:>20,.0f}{1000 * dt / args.length:>9.2f}")
        rows.append({"streams": n, "chars_per_sec": n * args.length / dt, "ms_per_step": 1000 * dt / args.length})
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "ckpt": args.ckpt, "parameters": params,
                                               "length": args.length, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
