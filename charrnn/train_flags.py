"""Range checks of train.py's ``--data.*`` and ``--model.*`` flags, before anything is read or built: a
:class:`~charrnn.errors.UsageError` whose one line names the flags at fault."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.errors import MAX_PROCESSES, UsageError
from charrnn.net_spec import Architecture, architecture_problems, parameter_count
from charrnn.preprocess import PreprocessError, check_encoding


def as_data_flags(e: PreprocessError) -> UsageError:
    """``e`` (charrnn.preprocess's, naming its flags) naming train.py's ``--data.*`` flags instead."""
    flags = {"output_h5": "input_h5", "output_json": "input_json", "vocab": "vocab_from"}  # others: the same
    return UsageError(re.sub(r"--(?!data\.)(\w+)\b", lambda m: f"--data.{flags.get(m[1], m[1])}", str(e)))


def check_data_flags(input_txt: str | None, input_h5: str | None, input_json: str | None, num_workers: int,
                     encoding: str) -> None:
    """Refuses a missing or directory corpus, more workers than this machine can start and an encoding that
    is not a text encoding or ``bytes`` (the plain ranges are in CharDataModule's signature)."""
    if not input_txt and not (input_h5 and input_json):
        raise UsageError("give --data.input_txt, or both --data.input_h5 and --data.input_json")
    if input_txt and (Path(input_txt).is_dir() or not Path(input_txt).name):
        raise UsageError(f"--data.input_txt {input_txt} is a directory; give the corpus's text file")
    if num_workers > MAX_PROCESSES:  # each is a process: a million would not start, they would hang the machine
        raise UsageError(f"--data.num_workers {num_workers}: give at most {MAX_PROCESSES} (4 per CPU here)")
    try:
        check_encoding(encoding)
    except PreprocessError as e:
        raise as_data_flags(e) from None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


def check_model_flags(hp: Mapping[str, Any], vocab_size: int) -> None:
    """Refuses an architecture that means nothing (``tie_weights`` with two widths, and for a CharRNN built
    in Python, sizes out of range) and a network whose float32 weights alone would not fit in this
    machine's memory (``--model.num_layers 1000000000`` would otherwise hang while its layers are made).
    The flags' plain ranges are in CharRNN's signature.

    Raises:
        UsageError: every flag at fault, in one line.
    """
    problems = [f"--model.{p}" for p in architecture_problems({k: hp[k] for k in hp if k != "vocab"})]
    if problems:
        raise UsageError("; ".join(problems))
    count = parameter_count(Architecture.from_fields(hp, vocab_size))
    memory = _memory_bytes()
    if memory is not None and 4 * count > memory:
        raise UsageError(f"--model.num_layers {hp['num_layers']}, --model.rnn_size {hp['rnn_size']}, "
                         f"--model.wordvec_size {hp['wordvec_size']}: a network of {count:,} parameters needs "
                         f"{4 * count / 2**30:,.0f} GiB for its weights alone; this machine has "
                         f"{memory / 2**30:,.0f} GiB")


def check_split_indices(indices: np.ndarray, vocab_size: int, what: str) -> None:
    """Refuses a split holding token indices outside 1..``vocab_size`` (an .h5 of another vocabulary than its
    .json), which would otherwise fail inside the embedding, mid-training. One pass over the split."""
    if len(indices) and not (int(indices.min()) >= 1 and int(indices.max()) <= vocab_size):
        raise UsageError(f"{what} holds token indices {int(indices.min())}..{int(indices.max())}, but its "
                         f"vocabulary (--data.input_json) has {vocab_size} tokens: the .h5 and .json do not "
                         "belong together")


FLOAT32 = (None, "32-true", "32", 32)  # the spellings of the Trainer's float32 precision (None: not given)


def check_trainer_flags(trainer: Mapping[str, Any] | None, model: Mapping[str, Any] | None) -> None:
    """Refuses ``--trainer.*`` flags that Lightning's own types let through: an
    ``accumulate_grad_batches`` below 1 (Lightning would divide by it) and a precision this run cannot
    train with (:func:`check_precision`)."""
    accumulate = (trainer or {}).get("accumulate_grad_batches")
    if isinstance(accumulate, int) and accumulate < 1:
        raise UsageError(f"--trainer.accumulate_grad_batches {accumulate}: give a whole number ≥1")
    check_precision(trainer, model)


def check_precision(trainer: Mapping[str, Any] | None, model: Mapping[str, Any] | None) -> None:
    """Refuses a ``--trainer.precision`` this run cannot train with, before the Trainer is built: a
    precision whose library is not installed (Transformer Engine), and any but float32 with
    ``--model.cuda_graph`` (its captured step runs without autocast)."""
    precision = (trainer or {}).get("precision")
    if isinstance(precision, str) and precision.startswith("transformer-engine") and \
            importlib.util.find_spec("transformer_engine") is None:
        raise UsageError(f"--trainer.precision {precision} needs NVIDIA's Transformer Engine (the transformer_engine "
                         "package), which is not installed, and brings nothing to an RNN; use bf16-mixed or 32-true")
    if (model or {}).get("cuda_graph") and precision not in FLOAT32:
        raise UsageError(f"--model.cuda_graph true needs --trainer.precision 32-true (not {precision}): the captured "
                         "step runs in float32. Leave out one of the two")
