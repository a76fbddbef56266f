"""CharDataModule: torch-rnn's .h5/.json splits as contiguous streams for stateful truncated BPTT."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import lightning as L
import numpy as np
import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveInt
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from charrnn.ckpt.load import read_vocab
from charrnn.corpus import Corpus
from charrnn.errors import UsageError
from charrnn.files import check_readable
from charrnn.lightning_private import batches_trained_this_epoch
from charrnn.stream_loader import ResumableLoader
from charrnn.train_flags import check_data_flags, check_split_indices
from charrnn.vocab import Vocab


def vocab_of(vocab_from: str | None) -> Vocab | None:
    """The vocabulary ``--data.vocab_from`` names: a checkpoint's, an export's, a torch-rnn .t7's or a
    vocabulary JSON (None without the flag)."""
    if not vocab_from:
        return None
    try:
        return read_vocab(vocab_from)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--data.vocab_from: {e}") from None


class SplitArray:
    """One split of an .h5 file, memory-mapped when stored contiguously (torch-rnn's and ours are).

    Opened lazily, so a DataLoader worker maps the file itself instead of receiving a copy.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        try:
            with h5py.File(path, "r") as f:
                ds = f[name] if name in f else None
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "ui":
                    raise UsageError(f"--data.input_h5 {path} has no 1-D dataset {name!r} of token indices; "
                                     "expected train, val and test (torch-rnn format)")
                self.length, self.dtype, self.offset = len(ds), ds.dtype, ds.id.get_offset()
        except OSError as e:
            raise UsageError(f"--data.input_h5 {path} is not a readable HDF5 file ({e})") from None
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            if self.length == 0:
                self._array = np.zeros(0, dtype=self.dtype)
            elif self.offset is not None:
                self._array = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(self.length,))
            else:  # chunked or compressed: read it once
                with h5py.File(self.path, "r") as f:
                    self._array = f[self.name][:]
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


class StreamBatches(Dataset):
    """Batch ``k`` of a split cut into contiguous rows, for stateful truncated BPTT.

    With 2 rows (batch_size 2) and seq_length 3 the text ``abcdefghijklm`` becomes::

        row 0: a b c | d e f        batch 0 = [abc, ghi]   targets [bcd, hij]
        row 1: g h i | j k l        batch 1 = [def, jkl]   targets [efg, klm]

    so row i of batch k+1 continues row i of batch k and the hidden state can be carried over.
    Under DDP each rank owns ``batch_size`` rows of its own; every rank gets the same batch count.
    Items are whole batches: use ``DataLoader(batch_size=None)``.
    """

    def __init__(self, split: SplitArray, batch_size: int, seq_length: int, rank: int = 0, world_size: int = 1) -> None:
        self.split, self.seq_length = split, seq_length
        rows = batch_size * world_size
        # The last character is only ever a target, hence the -1.
        self.row_length = (len(split) - 1) // rows // seq_length * seq_length if len(split) > 1 else 0
        self.row_starts = np.arange(rank * batch_size, (rank + 1) * batch_size) * self.row_length
        self.offsets = self.row_starts[:, None] + np.arange(seq_length + 1)  # (B, T+1) for batch 0
        self.num_batches = self.row_length // seq_length

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        if not 0 <= k < self.num_batches:
            raise IndexError(k)
        window = self.split.array[self.offsets + k * self.seq_length]  # (B, T+1), one gather
        window = torch.from_numpy(window.astype(np.int64)) - 1  # on disk 1-based
        return window[:, :-1], window[:, 1:]


def fit_batch_size(length: int, batch_size: int, seq_length: int, world_size: int, what: str) -> int:
    """The largest batch size ≤ ``batch_size`` that gives a split at least one batch (torch-rnn's rule)."""
    fits = (length - 1) // (seq_length * world_size) if length > 1 else 0
    if fits >= batch_size:
        return batch_size
    if fits == 0:
        raise UsageError(
            f"{what} has {length} characters, fewer than seq_length + 1 = {seq_length + 1} per process; "
            "lower --data.seq_length or use a larger corpus (or larger --data.val_frac/--data.test_frac)"
        )
    rank_zero_warn(f"{what} has {length} characters: batch_size reduced from {batch_size} to {fits} for it")
    return fits


class CharDataModule(L.LightningDataModule):
    """Character data from a text file (preprocessed once, redone when it changes) or a torch-rnn .h5/.json.

    Args:
        input_txt: the corpus. Its .h5/.json are written beside it (same stem) unless given below.
        url: where to download ``input_txt`` from when it is missing.
        input_h5: a preprocessed .h5 (torch-rnn's or ours); used as is when ``input_txt`` is absent.
        input_json: the vocabulary that goes with ``input_h5``.
        batch_size: number of contiguous streams per process.
        seq_length: characters per stream per step (truncated BPTT length).
        val_frac: fraction of the corpus held out for validation, after the training part.
        test_frac: fraction held out for testing, at the end.
        encoding: text codec of ``input_txt``, or ``bytes`` for one token per byte.
        num_workers: DataLoader worker processes.
        vocab_from: encode the corpus with the vocabulary of this checkpoint, export or vocabulary
            JSON instead of its own (fine-tuning; the CLI sets it to ``--model.init_from``). The
            .h5/.json then get a suffix naming that vocabulary, so the corpus's own files stay.
        unknown: with ``vocab_from``, the corpus's characters outside that vocabulary are left out of
            the encoded text and reported with counts (``drop``; their case is not swapped, as a prime's
            is), or the corpus is refused (``error``).
    """

    def __init__(
        self,
        input_txt: str | None = "data/tiny-shakespeare.txt",
        url: str | None = None,
        input_h5: str | None = None,
        input_json: str | None = None,
        batch_size: PositiveInt = 50,
        seq_length: PositiveInt = 50,
        val_frac: ClosedUnitInterval = 0.1,
        test_frac: ClosedUnitInterval = 0.1,
        encoding: str = "utf-8",
        num_workers: NonNegativeInt = 0,
        vocab_from: str | None = None,
        unknown: Literal["drop", "error"] = "drop",
    ) -> None:
        super().__init__()
        check_data_flags(input_txt, input_h5, input_json, num_workers, encoding)
        self.corpus = Corpus(input_txt, url, input_h5, input_json, val_frac, test_frac, encoding, vocab_from,
                             vocab_of(vocab_from), unknown, info=rank_zero_info, warn=rank_zero_warn)
        self.h5_path, self.json_path = self.corpus.h5_path, self.corpus.json_path
        self.batch_size, self.seq_length = batch_size, seq_length
        self.num_workers = num_workers
        self.datasets: dict[str, StreamBatches] = {}

    @property
    def vocab(self) -> list[str]:
        """The tokens in index order; LightningCLI links this into the model."""
        return self.corpus.vocab

    def prepare(self) -> None:
        """Downloads and preprocesses as needed (:meth:`Corpus.prepare`)."""
        self.corpus.prepare()

    # ---- files ------------------------------------------------------------------------------
    # ---- Lightning hooks ----------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.corpus.prepare()

    def setup(self, stage: str) -> None:
        self.corpus.prepare()
        check_readable(self.h5_path, "--data.input_h5")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for name in needed:
            split = SplitArray(self.h5_path, name)
            if name == "val" and len(split) == 0:
                continue  # no validation split (val_frac 0): validation is skipped
            what = f"the {name} split of {self.h5_path}"
            check_split_indices(split.array, len(self.vocab), what)
            batch = fit_batch_size(len(split), self.batch_size, self.seq_length, world, what)
            self.datasets[name] = StreamBatches(split, batch, self.seq_length, rank, world)

    def _loader(self, name: str) -> DataLoader | list:
        if name not in self.datasets:
            return []
        # A private generator, so making the iterator leaves the global RNG alone (see ResumableLoader).
        return DataLoader(self.datasets[name], batch_size=None, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, generator=torch.Generator().manual_seed(0))

    def _trained_this_epoch(self) -> int:
        """Batches of the current epoch already trained on: where a resumed epoch goes on."""
        return batches_trained_this_epoch(self.trainer)

    def train_dataloader(self) -> ResumableLoader:
        return ResumableLoader(self.datasets["train"], self._trained_this_epoch, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test")
