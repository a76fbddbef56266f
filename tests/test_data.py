"""The stream layout of stateful truncated BPTT, and the data module's file handling."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from charrnn.data import CharDataModule, SplitArray, StreamBatches, fit_batch_size


def make_split(tmp_path, values: np.ndarray) -> SplitArray:
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("train", data=values)
    return SplitArray(tmp_path / "s.h5", "train")


def test_layout_matches_the_docstring_diagram(tmp_path):
    text = "abcdefghijklm"
    split = make_split(tmp_path, np.frombuffer(text.encode(), dtype=np.uint8) - ord("a") + 1)
    batches = StreamBatches(split, batch_size=2, seq_length=3)
    assert len(batches) == 2
    as_text = lambda t: ["".join(chr(ord("a") + i) for i in row) for row in t.tolist()]  # noqa: E731
    (x0, y0), (x1, y1) = batches[0], batches[1]
    assert as_text(x0) == ["abc", "ghi"] and as_text(y0) == ["bcd", "hij"]
    assert as_text(x1) == ["def", "jkl"] and as_text(y1) == ["efg", "klm"]
    with pytest.raises(IndexError):
        batches[2]


def test_rows_continue_across_batches_and_targets_shift_by_one(tmp_path):
    data = np.arange(1, 1001, dtype=np.uint32)
    batches = StreamBatches(make_split(tmp_path, data), batch_size=4, seq_length=10)
    xs = torch.cat([batches[k][0] for k in range(len(batches))], dim=1)  # (B, all columns)
    ys = torch.cat([batches[k][1] for k in range(len(batches))], dim=1)
    assert torch.equal(ys[:, :-1], xs[:, 1:])
    for row in xs:  # each row is one contiguous stretch of the data (0-based now)
        assert torch.equal(row, torch.arange(row[0], row[0] + len(row)))
    assert xs.dtype == torch.int64 and xs.min() == 0


def test_ranks_own_disjoint_equal_streams(tmp_path):
    data = np.arange(1, 2001, dtype=np.uint32)
    split = make_split(tmp_path, data)
    per_rank = [StreamBatches(split, 3, 10, rank=r, world_size=2) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    seen = [set(torch.cat([b[k][0] for k in range(len(b))]).flatten().tolist()) for b in per_rank]
    assert not seen[0] & seen[1]
    # Together they cover all but a ragged tail: 6 streams of (2000 - 1) // 6 // 10 * 10 = 330 inputs each.
    assert len(seen[0]) + len(seen[1]) == 6 * 330


def test_batch_is_reduced_for_a_small_split():
    assert fit_batch_size(1000, 8, 10, 1, "split") == 8
    with pytest.warns(UserWarning, match="reduced from 8 to 3"):
        assert fit_batch_size(35, 8, 10, 1, "split") == 3
    with pytest.raises(ValueError, match="seq_length"):
        fit_batch_size(10, 8, 10, 1, "the val split of x.h5")


def test_preprocesses_once_and_again_when_the_text_changes(tiny_corpus):
    dm = CharDataModule(str(tiny_corpus), batch_size=2, seq_length=8)
    assert len(dm.vocab) == len(set(tiny_corpus.read_text()))
    h5 = tiny_corpus.with_suffix(".h5")
    stamp = h5.stat().st_mtime_ns
    CharDataModule(str(tiny_corpus)).prepare()
    assert h5.stat().st_mtime_ns == stamp  # reused
    tiny_corpus.write_text(tiny_corpus.read_text() + "Zounds!\n")
    dm2 = CharDataModule(str(tiny_corpus))
    assert "Z" in dm2.vocab and h5.stat().st_mtime_ns != stamp
    assert json.loads(tiny_corpus.with_suffix(".json").read_text())["charrnn"]["val_frac"] == 0.1


def test_loaders_yield_full_batches(tiny_corpus):
    dm = CharDataModule(str(tiny_corpus), batch_size=4, seq_length=16)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 16)
    assert len(dm.val_dataloader()) > 0


def test_missing_text_without_url_says_where_to_put_it(tmp_path):
    dm = CharDataModule(str(tmp_path / "corpus.txt"))
    with pytest.raises(FileNotFoundError, match="put your corpus there"):
        _ = dm.vocab


def test_failed_download_says_where_to_put_it(tmp_path):
    dm = CharDataModule(str(tmp_path / "corpus.txt"), url="http://127.0.0.1:9/none.txt")
    with pytest.raises(FileNotFoundError, match=r"put it at .*corpus.txt"):
        _ = dm.vocab
    assert not list(tmp_path.iterdir())  # no partial download left behind


def test_a_missing_corpus_is_downloaded_whole(tmp_path, tiny_corpus):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_corpus.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = tmp_path / "fresh" / "corpus.txt"
    try:
        dm = CharDataModule(str(target), url=f"http://127.0.0.1:{server.server_port}/{tiny_corpus.name}")
        assert len(dm.vocab) > 10
    finally:
        server.shutdown()
    assert target.read_bytes() == tiny_corpus.read_bytes()
    assert not list(target.parent.glob(".*"))  # no temporary file left beside it


def test_preprocessed_files_alone_are_enough(tiny_corpus):
    CharDataModule(str(tiny_corpus)).prepare()
    tiny_corpus.unlink()
    dm = CharDataModule(str(tiny_corpus))
    assert len(dm.vocab) > 10
    h5, js = tiny_corpus.with_suffix(".h5"), tiny_corpus.with_suffix(".json")
    dm2 = CharDataModule(None, input_h5=str(h5), input_json=str(js))
    assert dm2.vocab == dm.vocab
