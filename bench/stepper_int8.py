"""What int8 products cost in quality and gain in speed: the sampling stepper in float and in int8, side
by side, on the same model.

    python bench/stepper_int8.py --ckpt checkpoints/shakespeare/last.ckpt

Quality: the loss (nats/char) of feeding the last 10% of the corpus through the stepper one character
at a time, as sampling does. Speed: ms per step for batches of rows, on one torch thread (as each
server worker runs). Last, what the server would choose at start on this machine (its quick
measurement) against the faster of the two here, summed over the batch sizes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn.ckpt.load import read_model
from charrnn.kernel_choice import cpu_description
from charrnn.stepper import Stepper, choose_products, int8_available

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def loss(step: Stepper, ids: torch.Tensor, streams: int) -> float:
    length = len(ids) // streams
    x = ids[: streams * length].reshape(streams, length)
    state, total = None, 0.0
    for t in range(length - 1):
        logits, state = step(x[:, t], state)
        total += F.cross_entropy(logits, x[:, t + 1], reduction="sum").item()
    return total / (streams * (length - 1))


@torch.no_grad()
def ms_per_step(step: Stepper, vocab_size: int, rows: int, steps: int) -> float:
    tokens, state = torch.randint(0, vocab_size, (rows,)), None
    for _ in range(10):
        _, state = step(tokens, state)
    started = time.perf_counter()
    for _ in range(steps):
        _, state = step(tokens, state)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--corpus", default=str(ROOT / "data" / "tiny-shakespeare.txt"))
    p.add_argument("--chars", type=int, default=40_000, help="characters of the corpus's last 10%% to score")
    p.add_argument("--rows", type=int, nargs="+", default=[5, 20, 40, 80])
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    if not int8_available():
        raise SystemExit("this torch build cannot multiply int8 matrices on the CPU")
    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}")
    model = read_model(args.ckpt)
    net, vocab = model.net, model.vocab
    text = Path(args.corpus).read_text(encoding="utf-8")
    ids = torch.tensor(vocab.encode(vocab.swap_case_or_leave_out(text[int(len(text) * 0.9):][: args.chars])[0]))
    steppers = {"float": Stepper(net), "int8": Stepper(net, int8=True)}
    print(f"loss on {len(ids):,} characters of the last 10% (20 streams), nats/char:")
    for name, step in steppers.items():
        print(f"  {name:>5}: {loss(step, ids, 20):.5f}")
    print("ms per step, one thread:")
    print(f"  {'rows':>5}" + "".join(f"{name:>9}" for name in steppers) + "    ratio")
    totals = dict.fromkeys(steppers, 0.0)
    for rows in args.rows:
        times = [ms_per_step(step, len(vocab), rows, args.steps) for step in steppers.values()]
        print(f"  {rows:>5}" + "".join(f"{t:>9.3f}" for t in times) + f"{times[0] / times[1]:>9.2f}")
        for name, t in zip(steppers, times):
            totals[name] += t
    choice = choose_products(net.eval())
    faster = min(totals, key=totals.__getitem__)
    print(f"the server's choice at start: {choice.chosen} ({choice.describe()}); over these rows it takes "
          f"{totals[choice.chosen] / totals[faster]:.2f}x the time of the faster here ({faster})")


if __name__ == "__main__":
    main()
