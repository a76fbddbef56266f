"""Text file -> torch-rnn's .h5/.json, streaming in two passes so memory stays flat.

The command line of ``python -m charrnn.preprocess``, with torch-rnn's flags.
"""

from __future__ import annotations

import argparse
import sys

from charrnn.preprocess.run import preprocess
from charrnn.preprocess.settings import PreprocessError, PreprocessSettings
from charrnn.vocab import Vocab


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charrnn.preprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--input_txt", required=True, help="text file to read")
    p.add_argument("--output_h5", required=True, help="HDF5 file to write (train/val/test datasets)")
    p.add_argument("--output_json", required=True, help="vocabulary JSON to write")
    p.add_argument("--val_frac", type=float, default=0.1)
    p.add_argument("--test_frac", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--encoding", default="utf-8", help="utf-8 (or any Python codec), or bytes")
    p.add_argument("--vocab", help="reuse this torch-rnn/charrnn vocabulary JSON (e.g. to fine-tune)")
    p.add_argument("--unknown", default="drop", choices=("drop", "error"),
                   help="with --vocab: leave the text's characters outside it out of the encoded text (drop; "
                        "reported with counts, their case not swapped) or refuse the file (error)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes reading parts of a large file side by side (default: one per core, up to 8)")
    args = p.parse_args(argv)
    try:
        vocab = Vocab.load(args.vocab) if args.vocab else None
    except (FileNotFoundError, ValueError) as e:
        print(f"error: --vocab {e}", file=sys.stderr)
        return 2
    try:
        preprocess(PreprocessSettings(args.input_txt, args.output_h5, args.output_json, args.val_frac,
                                      args.test_frac, args.encoding, vocab, args.unknown, args.quiet, args.workers))
    except (PreprocessError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
