"""Generate text from a checkpoint: ``python sample.py --ckpt PATH [--start_text ...] [--length N]``.

Flag names follow torch-rnn's sample.lua; ``--sample 0`` takes the most likely character each step.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

from charrnn.ckpt.load import CheckpointError, read_model
from charrnn.devices import parse_device
from charrnn.errors import UsageError
from charrnn.files import check_readable
from charrnn.net import CharRNNNet
from charrnn.sampling import SEED_MAX, SEED_MIN, check_settings, generate_text, stream_text
from charrnn.vocab import Vocab

MAX_START_FILE = 64 << 20  # bytes
SAMPLES_PER_BATCH = 64  # --num_samples are generated (and printed) this many at a time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python sample.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True,
                   help="a .ckpt written by training, an export (model.safetensors or its directory), "
                        "or a torch-rnn checkpoint (.t7)")
    p.add_argument("--length", type=int, default=2000, help="new characters to generate")
    p.add_argument("--start_text", default="", help="prime text")
    p.add_argument("--start_file", help="read the prime from this file (long or multi-line primes)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--sample", type=int, choices=(0, 1), default=1, help="1 samples, 0 takes the argmax")
    p.add_argument("--top_k", type=int, help="sample among the k most likely characters")
    p.add_argument("--top_p", type=float, help="sample among the most likely characters holding probability p")
    p.add_argument("--num_samples", type=int, default=1,
                   help=f"samples to generate, {SAMPLES_PER_BATCH} at a time as one batch; each batch is printed "
                        "when it is done")
    p.add_argument("--seed", type=int, help="makes the output repeatable")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--include_start", action=argparse.BooleanOptionalAction, default=True,
                   help="echo the start text before the generated text")
    args = p.parse_args(argv)
    if args.length < 0:
        p.error(f"--length {args.length} must be ≥0")
    if args.num_samples < 1:
        p.error(f"--num_samples {args.num_samples} must be ≥1")
    try:
        check_settings(args.temperature, args.top_k, args.top_p)
        args.device = parse_device(args.device)
    except ValueError as e:
        p.error(f"--{e}")
    if args.seed is not None and not SEED_MIN <= args.seed <= SEED_MAX:
        p.error(f"--seed {args.seed}: give a whole number from {SEED_MIN} to {SEED_MAX} (64 bits)")
    if args.start_file:
        if args.start_text:
            p.error("give --start_text or --start_file, not both")
        try:
            check_readable(args.start_file, "--start_file", streams_ok=True)  # /dev/stdin, <(command)
            with open(args.start_file, "rb") as f:  # bounded: /dev/zero or a runaway pipe must not fill memory
                data = f.read(MAX_START_FILE + 1)
            if len(data) > MAX_START_FILE:
                p.error(f"--start_file {args.start_file} is longer than {MAX_START_FILE >> 20} MiB; give a shorter "
                        "prime")
            args.start_text = data.decode("utf-8")
        except UsageError as e:
            p.error(str(e))
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"--start_file {args.start_file}: {e}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, *a, **k: f"warning: {message}\n"
    try:
        model = read_model(args.ckpt, args.device)
        if model.origin is not None:
            print(f"--ckpt {args.ckpt}: {model.origin['summary']}", file=sys.stderr)
    except CheckpointError as e:
        print(f"error: --ckpt {e}", file=sys.stderr)
        return 2
    try:
        return _write(args, model.net, model.vocab)
    except (MemoryError, torch.OutOfMemoryError):
        print(f"error: --num_samples {args.num_samples} with --length {args.length} needs more memory than "
              f"{args.device} has ({min(args.num_samples, SAMPLES_PER_BATCH)} at once); ask for a shorter --length",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush is quiet too
        return 0


def _write(args: argparse.Namespace, net: CharRNNNet, vocab: Vocab) -> int:
    settings = dict(temperature=args.temperature if args.sample else 0.0, top_k=args.top_k, top_p=args.top_p,
                    num_samples=args.num_samples, seed=args.seed)
    out = sys.stdout
    if args.num_samples == 1:  # stream characters as they come
        if args.include_start:
            out.write(args.start_text)
        for pieces in stream_text(net, vocab, args.start_text, args.length, **settings):
            out.write(pieces[0])
            out.flush()
        out.write("\n")
        return 0
    # In batches of at most SAMPLES_PER_BATCH, each printed when done: a huge --num_samples streams
    # instead of holding everything (and printing nothing) until the end.
    device = next(net.parameters()).device
    settings["generator"] = torch.Generator(device=device).manual_seed(args.seed) if args.seed is not None else None
    del settings["seed"]
    done = 0
    while done < args.num_samples:
        settings["num_samples"] = min(SAMPLES_PER_BATCH, args.num_samples - done)
        for text in generate_text(net, vocab, args.start_text, args.length, **settings):
            done += 1
            out.write(f"===== sample {done} =====\n{args.start_text if args.include_start else ''}{text}\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
