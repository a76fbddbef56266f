"""Export a model for inference as safetensors + JSON: no pickle, nothing but tensors and text.

    python -m charrnn.export --ckpt checkpoints/shakespeare/last.ckpt --out exports/shakespeare

writes into the ``--out`` directory

- ``model.safetensors``: the network's weights; its metadata holds the architecture and the
  vocabulary, so this one file is enough for ``sample.py --ckpt`` and the server;
- ``vocab.json``: the same vocabulary in torch-rnn's format, for ``charrnn.preprocess --vocab``.

Optimizer state, RNG and loop progress are left out: an export samples and fine-tunes
(``--model.init_from``), it does not resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from charrnn import hints
from charrnn.atomic import atomic_write_all
from charrnn.ckpt.load import EXPORT_FORMAT, EXPORT_VOCAB, EXPORT_WEIGHTS, CheckpointError, LoadedModel, read_model

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export(ckpt: str | os.PathLike, out: str | os.PathLike, dtype: str = "float32") -> Path:
    """Writes ``model.safetensors`` and ``vocab.json`` for ``ckpt`` into directory ``out``; returns the former.

    Args:
        ckpt: a training checkpoint, a torch-rnn ``.t7`` (converted once), or an export (to change its dtype).
        out: the directory to write (created if missing); files already there are replaced atomically.
        dtype: ``float32``, ``float16`` or ``bfloat16`` for the weights (halves size; sampling on a
            CPU converts them back to float32).
    """
    out = _checked_out(out)
    return write(read_model(ckpt), Path(ckpt).name, out, dtype)


def _checked_out(out: str | os.PathLike) -> Path:
    """``--out``, refused before anything is read when it cannot be a directory."""
    if not os.fspath(out):
        raise CheckpointError("--out is empty; give a directory")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; give a directory")
    return out


def write(model: LoadedModel, source: str, out: str | os.PathLike, dtype: str = "float32") -> Path:
    """Writes the export of ``model`` (read from the file named ``source``) into directory ``out``, as
    :func:`export` does; returns the ``model.safetensors`` written."""
    from safetensors.torch import save

    out = _checked_out(out)
    # clone(): tied weights share storage, which safetensors refuses; each key gets its own copy.
    tensors = {k: v.detach().to(DTYPES[dtype]).contiguous().clone() for k, v in model.net.state_dict().items()}
    metadata = {
        "format": EXPORT_FORMAT,
        "architecture": json.dumps(asdict(model.architecture)),
        "vocab": json.dumps(model.vocab.tokens, ensure_ascii=False),
        "source": source,
    }
    if model.origin is not None:
        metadata["origin"] = json.dumps(model.origin)
    data = save(tensors, metadata=metadata)
    weights = out / EXPORT_WEIGHTS
    text = json.dumps(model.vocab.to_json_dict(), ensure_ascii=False).encode("utf-8")
    for target in (weights, out / EXPORT_VOCAB):
        if target.exists() and not target.is_file():
            raise CheckpointError(f"--out {out}: {target} is a directory or a device; move it away first")
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_all({weights: lambda f: f.write(data), out / EXPORT_VOCAB: lambda f: f.write(text)})
    except OSError as e:
        raise CheckpointError(f"--out {out}: cannot write {e.filename or out} ({e.strerror or e}); files already "
                              "there are left as they were") from None
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charrnn.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a .ckpt written by training, or a torch-rnn checkpoint (.t7)")
    p.add_argument("--out", required=True, help="directory for model.safetensors and vocab.json")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="dtype of the exported weights")
    args = p.parse_args(argv)
    try:
        out = _checked_out(args.out)
        model = read_model(args.ckpt)
        weights = write(model, Path(args.ckpt).name, out, args.dtype)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = weights.stat().st_size
    if model.origin is not None:
        print(f"converted {args.ckpt}: {model.origin['summary']}")
    print(f"wrote {weights} ({size / 1e6:.1f} MB) and {weights.with_name(EXPORT_VOCAB)}\n"
          f"try it:  {hints.sample_command(weights)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
