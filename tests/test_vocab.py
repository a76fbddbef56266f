import json

import pytest

from charrnn.vocab import Vocab


def test_round_trip_with_non_bmp_characters():
    text = "Hwæt! 😀 naïve 𝔘𝔫𝔦𝔠𝔬𝔡𝔢\r\n"
    vocab = Vocab(list(dict.fromkeys(text)))
    assert vocab.decode(vocab.encode(text)) == text
    assert len(vocab.encode("😀")) == 1  # one code point, one token (no surrogate pairs)


def test_more_than_255_tokens_round_trip_through_json(tmp_path):
    tokens = [chr(c) for c in range(0x400, 0x400 + 300)] + ["😀"]
    vocab = Vocab(tokens)
    path = tmp_path / "v.json"
    path.write_text(json.dumps(vocab.to_json_dict()))
    loaded = Vocab.load(path)
    assert loaded == vocab and len(loaded) == 301
    data = json.loads(path.read_text())
    assert data["token_to_idx"]["😀"] == 301 and data["idx_to_token"]["1"] == "\u0400"


def test_byte_vocabulary_spells_high_bytes_as_torch_rnn_does():
    vocab = Vocab(["a", "[195]", "[169]"])  # "é" is C3 A9 in UTF-8
    assert vocab.byte_level
    assert vocab.encode("aé") == [0, 1, 2]
    assert vocab.decode([0, 1, 2]) == "aé"


def test_unknown_characters():
    vocab = Vocab(list("abc "))
    assert vocab.unknown("aXbé") == {"X": 1, "é": 1}
    with pytest.raises(KeyError):
        vocab.encode("aé")
    assert vocab.swap_case_or_leave_out("A éQ") == ("a ", {"é": 1, "Q": 1})  # "A" swaps to "a"; "é", "Q" left out
    assert vocab.encode(vocab.swap_case_or_leave_out("A é")[0]) == [0, 3]


def test_rejects_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"idx_to_token": {"1": "a", "3": "b"}}')
    with pytest.raises(ValueError, match="without gaps"):
        Vocab.load(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Vocab.load(tmp_path / "missing.json")
