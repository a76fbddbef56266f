"""Fine-tuning: ``--model.init_from`` a checkpoint or export, the one place that reads it.

Before the classes are made, :func:`take_architecture` gives the model the file's architecture and the
data its vocabulary (unless ``--data.vocab_from`` names another), so one flag is enough; once the run
starts, :func:`initial_weights` hands the model the file's weights.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from charrnn.ckpt.load import CheckpointError, LoadedModel, read_model
from charrnn.net_spec import ARCHITECTURE_FIELDS
from charrnn.vocab import Vocab


def take_architecture(model: Any, data: Any) -> None:
    """Sets the parsed ``model`` settings' architecture to ``model.init_from``'s, and ``data.vocab_from`` to
    it when not given, saying in one line what changed; nothing without ``init_from``.

    Raises:
        CheckpointError: naming ``--model.init_from``.
    """
    init = model.get("init_from")
    if not init:
        return
    source = _read(init)
    if source.origin is not None:
        rank_zero_info(f"--model.init_from {init}: {source.origin['summary']}")
    architecture = {k: getattr(source.architecture, k) for k in ARCHITECTURE_FIELDS}
    if not data.get("vocab_from"):
        data.vocab_from = init
    changed = [f"{k}={v!r} (config: {model[k]!r})" for k, v in architecture.items() if k in model and model[k] != v]
    for k, v in architecture.items():
        if k in model:
            model[k] = v
    if changed:
        rank_zero_info(f"--model.init_from {init}: architecture taken from it: {', '.join(changed)}")


def initial_weights(path: str, vocab: Vocab) -> dict[str, Tensor]:
    """The network weights of ``path``, whose vocabulary must be ``vocab`` (the data's).

    Raises:
        CheckpointError: naming ``--model.init_from`` (and ``--data.vocab_from`` as the way out).
    """
    source = _read(path)
    if source.vocab != vocab:
        raise CheckpointError(f"--model.init_from {path}: its vocabulary ({len(source.vocab)} tokens) is not the "
                              f"data's ({len(vocab)} tokens); encode the corpus with it (--data.vocab_from {path})")
    return source.net.state_dict()


def _read(path: str) -> LoadedModel:
    try:
        return read_model(path)
    except CheckpointError as e:
        raise CheckpointError(f"--model.init_from {e}") from None
