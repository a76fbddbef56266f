"""Preprocessing: torch-rnn's exact format, determinism, and bad inputs that must not destroy anything."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from charrnn.atomic import atomic_write, temp_name
from charrnn.preprocess import PreprocessSettings, main, preprocess
from charrnn.vocab import Vocab


def torch_rnn_reference(text: str, val_frac: float = 0.1, test_frac: float = 0.1) -> tuple[dict, list[np.ndarray]]:
    """What torch-rnn's scripts/preprocess.py computes, character by character (the oracle)."""
    token_to_idx: dict[str, int] = {}
    for ch in text:
        if ch not in token_to_idx:
            token_to_idx[ch] = len(token_to_idx) + 1
    total = len(text)
    val, test = int(val_frac * total), int(test_frac * total)
    train = total - val - test
    dtype = np.uint8 if len(token_to_idx) <= 255 else np.uint32
    ids = np.array([token_to_idx[ch] for ch in text], dtype=dtype)
    return token_to_idx, [ids[:train], ids[train : train + val], ids[train + val :]]


def run(tmp_path: Path, text: str | bytes, *args: str) -> tuple[int, Path, Path]:
    src = tmp_path / "in.txt"
    src.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    h5, js = tmp_path / "out.h5", tmp_path / "out.json"
    code = main(["--input_txt", str(src), "--output_h5", str(h5), "--output_json", str(js), "--quiet", *args])
    return code, h5, js


def read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}


@pytest.mark.parametrize(
    "text",
    [
        "To be, or not to be:\r\nthat is the question.\n" * 30,
        "naïve café 😀 𝔘𝔫𝔦 — \u00a0 end",
        "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)) * 2,  # >255 tokens: uint32
    ],
)
def test_same_arrays_and_vocabulary_as_torch_rnn(tmp_path, text):
    code, h5, js = run(tmp_path, text)
    assert code == 0
    token_to_idx, splits = torch_rnn_reference(text)
    data = read_h5(h5)
    for name, expected in zip(("train", "val", "test"), splits):
        assert data[name].dtype == expected.dtype
        np.testing.assert_array_equal(data[name], expected)
    meta = json.loads(js.read_text())
    assert meta["token_to_idx"] == token_to_idx
    assert meta["idx_to_token"] == {str(i): t for t, i in token_to_idx.items()}


def test_vocabulary_of_255_tokens_is_uint8_and_256_is_uint32(tmp_path):
    for size, dtype in ((255, np.uint8), (256, np.uint32), (257, np.uint32)):
        text = "".join(chr(0x100 + i) for i in range(size))
        code, h5, _ = run(tmp_path, text, "--val_frac", "0", "--test_frac", "0")
        assert code == 0
        train = read_h5(h5)["train"]
        assert train.dtype == dtype and train.max() == size and train.min() == 1


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("text", ["héllo wörld 😀 " * 50,
                                  "plain ascii first, " * 20 + "then ü" + " more text. zq" * 30])
def test_chunk_boundaries_do_not_matter(tmp_path, monkeypatch, chunk, text):
    """Small chunks split multi-byte characters across reads and mix pure-ASCII chunks (not decoded)
    with decoded ones; the arrays and the order of the vocabulary must not change."""
    monkeypatch.setattr("charrnn.units.CHUNK_BYTES", chunk)
    _, h5, js = run(tmp_path, text)
    token_to_idx, splits = torch_rnn_reference(text)
    assert json.loads(js.read_text())["token_to_idx"] == token_to_idx
    for name, expected in zip(("train", "val", "test"), splits):
        np.testing.assert_array_equal(read_h5(h5)[name], expected)


@pytest.mark.parametrize("chunk", [2, 4096])
def test_reused_vocabulary_and_bytes_encoding_across_chunk_kinds(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr("charrnn.units.CHUNK_BYTES", chunk)
    vocab = preprocess_vocab(tmp_path, "abc é\n")
    src = tmp_path / "new.txt"
    src.write_text("abXc a\n" * 5 + "éZé\n" + "cab\n" * 5, encoding="utf-8")
    preprocess(PreprocessSettings(src, tmp_path / "n.h5", tmp_path / "n.json", 0, 0, vocab=vocab, quiet=True))
    assert vocab.decode(read_h5(tmp_path / "n.h5")["train"].astype(int) - 1) == \
        "abc a\n" * 5 + "éé\n" + "cab\n" * 5
    raw = b"ab\n" * 4 + "é".encode() + bytes(range(256))
    src.write_bytes(raw)
    bytes_vocab = preprocess(PreprocessSettings(src, tmp_path / "b.h5", tmp_path / "b.json", 0, 0, encoding="bytes",
                                                quiet=True))
    assert bytes_vocab.tokens[:4] == ["a", "b", "\n", "[195]"]
    assert bytes_vocab.decode_bytes(read_h5(tmp_path / "b.h5")["train"].astype(int) - 1) == raw


def test_deterministic_bytes(tmp_path):
    text = "Deterministic output, please.\n" * 100
    _, h5, js = run(tmp_path, text)
    first = (h5.read_bytes(), js.read_bytes())
    os.utime(tmp_path / "in.txt", (0, 0))  # a different mtime must not matter either
    _, h5, js = run(tmp_path, text)
    assert (h5.read_bytes(), js.read_bytes()) == first


def test_bytes_encoding_like_torch_rnn(tmp_path):
    text = "café\n".encode() + b"\xff\x00raw"
    code, h5, js = run(tmp_path, text, "--encoding", "bytes", "--val_frac", "0", "--test_frac", "0")
    assert code == 0
    meta = json.loads(js.read_text())
    assert meta["token_to_idx"]["[195]"] == 4 and meta["token_to_idx"]["[255]"] == 7
    vocab = Vocab.load(js)
    assert vocab.byte_level
    ids = read_h5(h5)["train"].astype(int) - 1
    assert vocab.decode_bytes(ids) == text


def test_bom_and_crlf_are_characters(tmp_path):
    code, h5, js = run(tmp_path, "\ufeffa\r\nb")
    assert code == 0
    assert list(json.loads(js.read_text())["token_to_idx"]) == ["\ufeff", "a", "\r", "\n", "b"]


def test_invalid_utf8_names_the_byte_offset(tmp_path, capsys):
    code, h5, js = run(tmp_path, b"good text \xe9 more")
    assert code == 2
    err = capsys.readouterr().err
    assert "--input_txt" in err and "byte 10" in err and "--encoding bytes" in err
    assert not h5.exists() and not js.exists()


@pytest.mark.parametrize("chunk", [3, 4, 4096])
@pytest.mark.parametrize("data,offset", [("éééé".encode() + b"\xff", 8), (b"abc " * 100 + b"\xc3(", 400),
                                         (("aé" * 400 + "b").encode() + b"\xe2\x82", 1201)])
def test_invalid_utf8_offset_across_chunks(tmp_path, monkeypatch, capsys, chunk, data, offset):
    monkeypatch.setattr("charrnn.units.CHUNK_BYTES", chunk)
    code, *_ = run(tmp_path, data)
    assert code == 2 and f"byte {offset} " in capsys.readouterr().err


def test_text_with_many_non_ascii_runs_is_decoded_whole(tmp_path):
    text = "aé" * 2000 + "end 😀"  # 2,000 runs in one read: more than MAX_RUNS
    _, h5, js = run(tmp_path, text)
    token_to_idx, splits = torch_rnn_reference(text)
    assert json.loads(js.read_text())["token_to_idx"] == token_to_idx
    np.testing.assert_array_equal(read_h5(h5)["train"], splits[0])


@pytest.mark.parametrize("text", [b"", b"x"])
def test_empty_or_one_character_input(tmp_path, capsys, text):
    code, h5, _ = run(tmp_path, text)
    assert code == 2 and "--input_txt" in capsys.readouterr().err and not h5.exists()


def test_whitespace_only_input_is_fine(tmp_path):
    code, h5, _ = run(tmp_path, " \n\t \n" * 10)
    assert code == 0 and read_h5(h5)["train"].size == 40


def test_missing_input_names_the_flag(tmp_path, capsys):
    code = main(["--input_txt", str(tmp_path / "nope.txt"), "--output_h5", str(tmp_path / "a.h5"),
                 "--output_json", str(tmp_path / "a.json")])
    assert code == 2 and "--input_txt" in capsys.readouterr().err


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("precious text\n")
    code = main(["--input_txt", str(src), "--output_h5", str(src), "--output_json", str(tmp_path / "o.json")])
    assert code == 2 and "--output_h5" in capsys.readouterr().err
    assert src.read_text() == "precious text\n"


def test_missing_parent_directory(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("some text\n")
    code = main(["--input_txt", str(src), "--output_h5", str(tmp_path / "no" / "o.h5"),
                 "--output_json", str(tmp_path / "o.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_failed_run_keeps_the_previous_pair(tmp_path):
    _, h5, js = run(tmp_path, "first version of the corpus\n")
    before = (h5.read_bytes(), js.read_bytes())
    code, h5, js = run(tmp_path, b"broken \xff corpus")
    assert code == 2
    assert (h5.read_bytes(), js.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.h5", "out.json"]  # no temp files left


def test_reuse_a_vocabulary_leaves_out_unknown_characters_without_swapping_their_case(tmp_path, capsys):
    vocab = preprocess_vocab(tmp_path, "abc \n")
    src = tmp_path / "new.txt"
    src.write_text("abcXAa bé\n")
    out = preprocess(PreprocessSettings(src, tmp_path / "n.h5", tmp_path / "n.json", 0, 0, vocab=vocab))
    assert out == vocab
    assert "3 characters of --input_txt" in (report := capsys.readouterr().out)
    assert "'X'×1, 'A'×1, 'é'×1 (left out)" in report  # "A" is left out, not swapped to "a" as a prime's would be
    assert vocab.decode(read_h5(tmp_path / "n.h5")["train"].astype(int) - 1) == "abca b\n"
    with pytest.raises(ValueError, match="--unknown drop"):
        preprocess(PreprocessSettings(src, tmp_path / "n.h5", tmp_path / "n.json", 0, 0, vocab=vocab,
                                      unknown="error"))


def test_the_json_records_the_sha256_of_the_whole_file(tmp_path):
    data = np.random.default_rng(0).integers(32, 127, size=(1 << 20) + 7, dtype=np.uint8).tobytes()  # several blocks
    code, _, js = run(tmp_path, data)
    assert code == 0
    assert json.loads(js.read_text())["charrnn"]["source_sha256"] == hashlib.sha256(data).hexdigest()
    code, _, js = run(tmp_path, "abc")
    assert json.loads(js.read_text())["charrnn"]["source_sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")  # FIPS 180-2's example


def test_atomic_write_names_the_staged_file_for_writers_that_write_it_by_name(tmp_path):
    target = tmp_path / "x.h5"
    target.write_bytes(b"old")

    def write(file) -> None:
        assert Path(file.name) == temp_name(target) and target.read_bytes() == b"old"
        with h5py.File(file.name, "w") as f:
            f["x"] = np.arange(3)

    atomic_write(target, write)
    assert read_h5(target)["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]


def preprocess_vocab(tmp_path: Path, text: str) -> Vocab:
    src = tmp_path / "vocab-source.txt"
    src.write_text(text)
    return preprocess(PreprocessSettings(src, tmp_path / "v.h5", tmp_path / "v.json", 0, 0, quiet=True))


def test_prints_sizes_like_torch_rnn(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("abcdefghij" * 10)
    preprocess(PreprocessSettings(src, tmp_path / "o.h5", tmp_path / "o.json"))
    out = capsys.readouterr().out
    for line in ("Total vocabulary size: 10", "Total tokens in file: 100", "  Training size: 80",
                 "  Val size: 10", "  Test size: 10", "Using dtype uint8"):
        assert line in out.splitlines()


def test_loads_a_file_written_by_torch_rnn(tmp_path):
    """torch-rnn wrote its arrays with h5py's create_dataset(data=...) and json.dump of both maps."""
    text = "Lo! a torch-rnn file.\n"
    token_to_idx, splits = torch_rnn_reference(text, 0.1, 0.1)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        for name, arr in zip(("train", "val", "test"), splits):
            f.create_dataset(name, data=arr)
    (tmp_path / "t.json").write_text(json.dumps(
        {"idx_to_token": {str(i): t for t, i in token_to_idx.items()}, "token_to_idx": token_to_idx}))
    from charrnn.data import SplitArray

    vocab = Vocab.load(tmp_path / "t.json")
    assert vocab.decode(SplitArray(tmp_path / "t.h5", "train").array.astype(int) - 1) == text[: len(splits[0])]


# ---- several parts: a file cut into byte ranges that processes read side by side ----------------

SENTENCE = b"The quick brown fox jumps over the lazy dog; 0123456789!\n"


def straddling(size: int, parts: int, chars: str) -> bytes:
    """``size`` bytes of ASCII with a multi-byte character across each cut of a file into ``parts``
    (the cut falls on its second byte), taking the characters of ``chars`` in turn."""
    data = bytearray((SENTENCE * (size // len(SENTENCE) + 1))[:size])
    for i in range(1, parts):
        encoded = chars[(i - 1) % len(chars)].encode()
        cut = i * size // parts
        data[cut - 1 : cut - 1 + len(encoded)] = encoded
    return bytes(data)


@pytest.fixture
def part_log(monkeypatch) -> list[list[tuple[int, int]]]:
    """Cuts files into parts of any size, reads them 5 bytes at a time, and records each run's parts."""
    from charrnn.preprocess import parts, run

    monkeypatch.setattr(parts, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(parts, "may_fork", lambda: True)  # whatever threads earlier tests left running
    monkeypatch.setattr("charrnn.units.CHUNK_BYTES", 5)
    log: list[list[tuple[int, int]]] = []
    real = parts.split_file

    def logged(*args) -> list[tuple[int, int]]:
        log.append(real(*args))
        return log[-1]

    monkeypatch.setattr(run, "split_file", logged)
    return log


def outputs(tmp_path: Path, capsys, data: bytes, workers: int, *args: str) -> tuple[bytes, bytes, str]:
    """The .h5 and .json files and the printed report of one run with ``workers``."""
    run_dir = tmp_path / f"workers-{workers}"
    run_dir.mkdir()
    src = run_dir / "in.txt"
    src.write_bytes(data)
    h5, js = run_dir / "out.h5", run_dir / "out.json"
    capsys.readouterr()
    code = main(["--input_txt", str(src), "--output_h5", str(h5), "--output_json", str(js),
                 "--workers", str(workers), *args])
    report = capsys.readouterr()
    assert code == 0, report.err
    assert sorted(p.name for p in run_dir.iterdir()) == ["in.txt", "out.h5", "out.json"]  # no temp files left
    return h5.read_bytes(), js.read_bytes(), report.out.replace(str(run_dir), "DIR")


def assert_same_for_any_workers(tmp_path, capsys, part_log, data: bytes, *args: str) -> None:
    """2, 3 and 4 parts give byte-identical files and the same report as one part."""
    one = outputs(tmp_path, capsys, data, 1, *args)
    assert len(part_log[-1]) == 1
    for workers in (2, 3, 4):
        assert outputs(tmp_path, capsys, data, workers, *args) == one, f"{workers} workers"
        assert len(part_log[-1]) == workers


@pytest.mark.parametrize("width", [2, 3, 4])
def test_parts_start_on_character_boundaries(tmp_path, width):
    from charrnn.preprocess.parts import split_file

    char = {2: "é", 3: "€", 4: "😀"}[width]
    for into in range(width):  # the middle of the file falls this many bytes into the character
        data = b"a" * (50 - into) + char.encode() + b"b" * (50 + into - width)
        src = tmp_path / "in.txt"
        src.write_bytes(data)
        cut = 50 - into + width if into else 50  # after the character, or at its start
        assert split_file(src, "utf-8", 2) == [(0, cut), (cut, 100)]
        assert split_file(src, "bytes", 2) == [(0, 50), (50, 100)]


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_characters_across_cuts_and_new_ones_in_a_later_part(tmp_path, capsys, part_log, parts):
    data = straddling(600, parts, "é€😀") + "Zжß — first seen at the end 𝔘\n".encode()
    assert_same_for_any_workers(tmp_path, capsys, part_log, data)
    token_to_idx, splits = torch_rnn_reference(data.decode())
    written = read_h5(tmp_path / "workers-4" / "out.h5")
    assert json.loads((tmp_path / "workers-4" / "out.json").read_text())["token_to_idx"] == token_to_idx
    for name, expected in zip(("train", "val", "test"), splits):
        np.testing.assert_array_equal(written[name], expected)


def test_bytes_encoding_in_parts(tmp_path, capsys, part_log):
    data = straddling(500, 4, "é€😀") + bytes(range(255, -1, -1))
    assert_same_for_any_workers(tmp_path, capsys, part_log, data, "--encoding", "bytes")
    vocab = Vocab.load(tmp_path / "workers-3" / "out.json")
    train = read_h5(tmp_path / "workers-3" / "out.h5")["train"].astype(int) - 1
    assert vocab.decode_bytes(train) == data[: len(train)]


def test_reused_vocabulary_in_parts_drops_the_same_characters(tmp_path, capsys, part_log):
    vocab_src = tmp_path / "vocab.txt"
    vocab_src.write_bytes(SENTENCE + "é€".encode())
    preprocess(PreprocessSettings(vocab_src, tmp_path / "v.h5", tmp_path / "v.json", quiet=True))
    data = straddling(700, 4, "é€😀ж") + "XYZ ж 😀".encode()  # 😀, ж, X, Y, Z are unknown
    assert_same_for_any_workers(tmp_path, capsys, part_log, data, "--vocab", str(tmp_path / "v.json"))
    report = outputs(tmp_path, capsys, data, 5, "--vocab", str(tmp_path / "v.json"))[2]
    assert "6 characters" in report and "'😀'×2, 'X'×1, 'Y'×1, 'Z'×1, 'ж'×1 (left out)" in report
    written = read_h5(tmp_path / "workers-5" / "out.h5")
    kept = np.concatenate([written[name] for name in ("train", "val", "test")]).astype(int) - 1
    assert Vocab.load(tmp_path / "v.json").decode(kept) == \
        "".join(ch for ch in data.decode() if ch not in "😀жXYZ")


def test_more_than_255_tokens_in_parts(tmp_path, capsys, part_log):
    data = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)).encode() * 2 + SENTENCE
    assert_same_for_any_workers(tmp_path, capsys, part_log, data)
    written = read_h5(tmp_path / "workers-2" / "out.h5")
    token_to_idx, splits = torch_rnn_reference(data.decode())
    for name, expected in zip(("train", "val", "test"), splits):
        assert written[name].dtype == np.uint32
        np.testing.assert_array_equal(written[name], expected)


def test_no_held_out_splits_in_parts(tmp_path, capsys, part_log):
    data = straddling(400, 3, "€😀é")
    assert_same_for_any_workers(tmp_path, capsys, part_log, data, "--val_frac", "0", "--test_frac", "0")
    written = read_h5(tmp_path / "workers-3" / "out.h5")
    assert written["val"].size == written["test"].size == 0
    assert Vocab.load(tmp_path / "workers-3" / "out.json").decode(written["train"].astype(int) - 1) == data.decode()


def test_invalid_utf8_in_a_later_part_names_its_file_offset(tmp_path, capsys, part_log):
    _, h5, js = run(tmp_path, "the previous corpus\n")
    before = (h5.read_bytes(), js.read_bytes())
    data = bytearray(straddling(600, 2, "€"))
    data[450] = 0xFF
    code, h5, js = run(tmp_path, bytes(data), "--workers", "2")
    assert len(part_log[-1]) == 2 and part_log[-1][1][0] <= 450
    assert code == 2 and "byte 450 " in capsys.readouterr().err
    assert (h5.read_bytes(), js.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.h5", "out.json"]  # no temp files left


def test_workers_must_be_positive(tmp_path, capsys):
    code, *_ = run(tmp_path, "some text\n", "--workers", "0")
    assert code == 2 and "--workers" in capsys.readouterr().err


def test_a_process_running_threads_does_not_fork(tmp_path, monkeypatch):
    import threading

    from charrnn.preprocess.parts import part_count

    monkeypatch.setattr("charrnn.preprocess.parts.MIN_PART_BYTES", 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert part_count(1000, "utf-8", 4) == 1
    finally:
        stop.set()
        other.join()
    assert part_count(1000, "utf-8", 4) == (4 if threading.active_count() == 1 else 1)
