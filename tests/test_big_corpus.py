"""Corpora larger than memory: splits are memory-mapped, and DataLoader workers map the file
themselves instead of receiving a copy of the split."""

from __future__ import annotations

import json
import pickle

import numpy as np

from charrnn.data import SplitArray
from charrnn.preprocess import PreprocessSettings, preprocess
from tests.support.ddp import SEQ, TIMEOUT, record, train_args
from tests.support.processes import run_ok


def test_a_split_is_memory_mapped_and_pickles_without_its_data(tiny_corpus):
    h5, js = tiny_corpus.with_suffix(".h5"), tiny_corpus.with_suffix(".json")
    preprocess(PreprocessSettings(tiny_corpus, h5, js, quiet=True))
    split = SplitArray(h5, "train")
    assert isinstance(split.array, np.memmap)
    sent = pickle.dumps(split)  # what a DataLoader worker receives
    assert len(sent) < 1000 < len(split)
    again = pickle.loads(sent)
    assert again._array is None and np.array_equal(again.array, split.array)


def test_training_with_two_workers_reads_the_streams_in_order(tiny_corpus):
    work = tiny_corpus.parent
    run_ok(train_args("--data.num_workers", "2", "--data.batch_size", "2", "--trainer.max_steps", "6",
                      *record(), ddp=False), work, TIMEOUT)
    rec = json.loads((work / "rec" / "rank0.json").read_text())
    train = SplitArray(work / "tiny.h5", "train").array.astype(np.int64) - 1
    row_length = (len(train) - 1) // 2 // SEQ * SEQ
    assert [b["batch_idx"] for b in rec["batches"]] == list(range(6))
    for k, batch in enumerate(rec["batches"]):
        for i in range(2):
            start = i * row_length + k * SEQ
            assert batch["x"][i] == train[start : start + SEQ].tolist()
            assert batch["y"][i] == train[start + 1 : start + SEQ + 1].tolist()
