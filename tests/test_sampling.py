"""The one sampling function: determinism, argmax, top-k/top-p, batching and unknown characters."""

from __future__ import annotations

import pytest
import torch

from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from charrnn.sampling import check_settings, generate, generate_text, pick, stream_text
from charrnn.vocab import Vocab

VOCAB = Vocab(list("abcdefgh \n"))


@pytest.fixture
def net() -> CharRNNNet:
    torch.manual_seed(0)
    return CharRNNNet(Architecture(len(VOCAB), "lstm", 8, 16, 2)).eval()


def test_same_seed_same_text_other_seed_other_text(net):
    a = generate_text(net, VOCAB, "abc", 200, seed=7)
    assert a == generate_text(net, VOCAB, "abc", 200, seed=7)
    assert a != generate_text(net, VOCAB, "abc", 200, seed=8)
    assert len(a[0]) == 200 and set(a[0]) <= set(VOCAB.tokens)


def test_seeded_sampling_leaves_the_global_generator_alone(net):
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    generate_text(net, VOCAB, "a", 20, seed=1)
    assert torch.equal(torch.rand(1), expected)


def test_argmax_is_top_k_1_and_tiny_top_p(net):
    greedy = generate_text(net, VOCAB, "ab", 50, temperature=0.0)
    assert greedy == generate_text(net, VOCAB, "ab", 50, top_k=1, seed=1)
    assert greedy == generate_text(net, VOCAB, "ab", 50, top_p=1e-6, seed=2)


def test_pick_respects_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(pick(logits, 1.0, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(pick(logits, 1.0, top_p=0.7, generator=g).tolist()) == {0, 1}  # 0.5 < 0.7 ≤ 0.8
    assert set(pick(logits, 1.0, generator=g).tolist()) == {0, 1, 2, 3}


def test_a_top_p_below_float32s_smallest_keeps_the_most_likely_token():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    for top_p in (1e-30, 1e-50, 5e-324):  # 1e-50 and 5e-324 are 0 in float32
        assert torch.equal(pick(logits, 1.0, top_p=top_p, generator=torch.Generator().manual_seed(1)),
                           logits.argmax(dim=-1))


@pytest.mark.parametrize(("settings", "name"), [
    ({"temperature": float("nan")}, "temperature nan"), ({"temperature": float("inf")}, "temperature inf"),
    ({"temperature": -0.5}, "temperature -0.5"), ({"temperature": [0.5, float("nan")]}, "temperature nan"),
    ({"top_k": 0}, "top_k 0"), ({"top_k": -3}, "top_k -3"),
    ({"top_p": 0.0}, "top_p 0.0"), ({"top_p": float("nan")}, "top_p nan"), ({"top_p": 1.5}, "top_p 1.5"),
])
def test_meaningless_settings_are_refused_naming_them(net, settings, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        check_settings(**settings)
    with pytest.raises(ValueError, match=f"^{name}: "):
        generate_text(net, VOCAB, "ab", 5, **settings)
    if not isinstance(settings.get("temperature"), list):
        with pytest.raises(ValueError, match=f"^{name}: "):
            pick(torch.zeros(2, 4), **settings)


def test_settings_at_the_edges_are_taken():
    check_settings(0.0, top_k=10**30, top_p=1.0)  # greedy; every character; the whole distribution
    check_settings([0.0, 1e-300, 1e300])


def test_a_row_with_nothing_to_sample_from_takes_its_most_likely_token():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    out = pick(logits, torch.tensor([float("nan"), 1.0]), uniform=torch.tensor([0.5, 0.0]))
    assert out.tolist() == [1, 0]  # NaN scores give argmax, not the last token


def test_per_row_temperature_zero_is_greedy():
    logits = torch.tensor([[0.0, 1.0, 0.5]] * 3)
    out = pick(logits, torch.tensor([0.0, 0.0, 0.0]))
    assert out.tolist() == [1, 1, 1]


def test_batch_rows_match_single_runs_under_argmax(net):
    batched = generate_text(net, VOCAB, "bead", 30, temperature=0.0, num_samples=3)
    assert batched == generate_text(net, VOCAB, "bead", 30, temperature=0.0) * 3


def test_streaming_yields_one_piece_per_step(net):
    steps = list(stream_text(net, VOCAB, "a", 10, num_samples=2, seed=0))
    assert len(steps) == 10 and all(len(s) == 2 for s in steps)


def test_empty_prime_and_zero_length(net):
    assert len(generate_text(net, VOCAB, "", 5, seed=0)[0]) == 5
    assert generate_text(net, VOCAB, "abc", 0) == [""]
    assert list(generate(net, torch.zeros(1, 0, dtype=torch.long), 0)) == []


def test_unknown_characters_warn_and_never_crash(net):
    with pytest.warns(UserWarning, match="'é'×2"):
        text = generate_text(net, VOCAB, "éAé", 10, seed=0)  # "A" folds to "a"; "é" is left out
    assert len(text[0]) == 10


def test_restores_training_mode(net):
    net.train()
    generate_text(net, VOCAB, "a", 3)
    assert net.training


def test_byte_vocabulary_streams_whole_characters():
    vocab = Vocab(["a", "[195]", "[169]"])
    torch.manual_seed(0)
    net = CharRNNNet(Architecture(len(vocab), "gru", 4, 8, 1))
    text = generate_text(net, vocab, "é", 40, seed=3)[0]
    # Each of the 40 bytes is in exactly one character: "a", half of a whole "é", or a stray byte's U+FFFD.
    assert set(text) <= {"a", "é", "\ufffd"}
    assert text.count("a") + 2 * text.count("é") + text.count("\ufffd") == 40
    assert text.count("é") == 3  # these seeds draw 195 then 169 three times: each pair one "é", never two U+FFFD
