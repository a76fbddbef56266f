"""Loss curves from a run's TensorBoard event files, as a PNG.

    python -m charrnn.plot lightning_logs/version_0 [--out loss.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from charrnn.events import read_scalars

CURVES = ("train/loss", "val/loss")


def plot_losses(logdir: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Writes train and val loss (nats/char, by step) of ``logdir`` to the PNG ``out``."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'charrnn[plot]' (make test installs it)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(logdir)
    found = [tag for tag in CURVES if scalars.get(tag)]
    if not found:
        raise ValueError(f"{logdir} has no train/loss or val/loss scalars yet")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for tag in found:
        points = scalars[tag]
        ax.plot([p.step for p in points], [p.value for p in points], label=tag,
                marker="o" if tag.startswith("val") else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.set_title(title or str(logdir))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charrnn.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("logdir", help="a run's log directory, e.g. lightning_logs/version_0")
    p.add_argument("--out", help="PNG to write (default: LOGDIR/loss.png)")
    p.add_argument("--title")
    args = p.parse_args(argv)
    try:
        out = plot_losses(args.logdir, args.out or Path(args.logdir) / "loss.png", args.title)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
