"""What a Lightning checkpoint lacks for an exact resume: the global RNG states and the carried
hidden state of stateful truncated BPTT. The model saves and restores them with these helpers."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from charrnn.ckpt.rng import get_rng_states, set_rng_states
from charrnn.lightning_private import validation_follows_batch
from charrnn.net import State, state_from_tensors, state_tensors

KEY = "charrnn_resume"


def validation_follows(trainer: L.Trainer | None) -> bool:
    """Whether the fit loop validates right after the current training batch.

    A checkpoint taken at such a batch is written before that validation, and on resume Lightning
    counts the validation as done without running it; its reset of the carried state must then be
    in the checkpoint already.
    """
    if trainer is None or not trainer.training:
        return False
    if not validation_follows_batch(trainer):
        return False
    loop = trainer.fit_loop.epoch_loop
    loop.val_loop.setup_data()  # idempotent; it tells whether there is anything to validate on
    return not loop.val_loop.skip


def capture(trainer: L.Trainer | None, hidden: State | None) -> dict[str, Any]:
    """The state to store under ``checkpoint[KEY]``; ``hidden`` is the state the next batch starts from."""
    if validation_follows(trainer):
        hidden = None
    return {
        "world_size": trainer.world_size if trainer is not None else 1,
        "hidden": None if hidden is None else [s.cpu() for s in state_tensors(hidden)],
        "rng": get_rng_states(),
    }


def restore(saved: dict[str, Any], trainer: L.Trainer, device: torch.device) -> State | None:
    """Sets the global RNG states and returns the carried state, on ``device``.

    Run as late as possible before the first resumed batch (``on_train_start``), so that nothing
    in between draws from the restored generators.
    """
    if saved["world_size"] != 1 or trainer.world_size != 1:
        # Only rank 0's states are in the file; other ranks' streams are not. The run continues
        # correctly, but the random draws and carried states differ from an uninterrupted run.
        rank_zero_warn("resuming a multi-process run: RNG and carried hidden states restart fresh; "
                       "the run continues, but not bit-identically to an uninterrupted one")
        return None
    set_rng_states(saved["rng"])
    hidden = saved["hidden"]
    if hidden is None:
        return None
    return state_from_tensors([s.to(device) for s in hidden])
