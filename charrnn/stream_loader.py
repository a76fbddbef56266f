"""A DataLoader over the stream batches that remembers where an interrupted epoch stopped.

Lightning saves ``state_dict()`` of the training loader with its loops and hands it back to
``load_state_dict()`` on resume, before the epoch's iterator is created; the resumed epoch then
continues at the next unseen batch instead of starting over.

The position is not counted by the loader: Lightning fetches one batch ahead and workers fetch
further, so the loader is always ahead of training. It is asked from whoever knows how many
batches of the epoch were trained on (the data module passes the Trainer's own count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableSampler(Sampler[int]):
    """Batch indices ``0 .. n-1`` in order; the next pass after a resume starts at ``start``."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.start = 0

    def __len__(self) -> int:
        return self.num_batches  # the whole epoch, also when resumed: Lightning counts from the restored position

    def __iter__(self) -> Iterator[int]:
        # Read at the first index taken, not when the iterator is made: a multi-worker DataLoader
        # makes two sampler iterators when it starts and drops the first one unused.
        start, self.start = self.start, 0
        yield from range(start, self.num_batches)


class ResumableLoader(DataLoader):
    """Whole-batch items (``batch_size=None``) of ``dataset`` in order, resumable mid-epoch.

    Args:
        dataset: map-style dataset whose item ``k`` is batch ``k``.
        trained: returns how many batches of the current epoch have been trained on.
        num_workers: worker processes.
    """

    def __init__(self, dataset: Dataset, trained: Callable[[], int], num_workers: int = 0) -> None:
        # A private generator: creating the iterator then draws its worker seed from it, not from
        # the global torch RNG, whose stream (dropout) must be the same with and without a resume.
        super().__init__(dataset, batch_size=None, sampler=ResumableSampler(len(dataset)), num_workers=num_workers,
                         persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))
        self.trained = trained

    def state_dict(self) -> dict[str, Any]:
        return {"next_batch": int(self.trained()), "num_batches": self.sampler.num_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = self.sampler.num_batches
        if state.get("num_batches") != n:
            rank_zero_warn(f"the checkpoint's epoch had {state.get('num_batches')} batches, this one has {n} "
                           "(different data, batch_size or seq_length?): the resumed epoch starts at its beginning")
            return
        self.sampler.start = int(state["next_batch"]) % n  # a finished epoch resumes at the next one's start
