"""The one-token stepper gives what the network gives, and the sampler draws from the right distribution."""

import pytest
import torch

from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from charrnn.sampling import pick
from charrnn.stepper import Stepper


@pytest.mark.parametrize("model_type,layer_norm", [("lstm", False), ("gru", False), ("rnn", False), ("lstm", True)])
def test_steps_match_the_network(model_type: str, layer_norm: bool) -> None:
    torch.manual_seed(0)
    net = CharRNNNet(Architecture(11, model_type, wordvec_size=6, rnn_size=9, num_layers=3, dropout=0.3,
                     layer_norm=layer_norm)).eval()
    x = torch.randint(0, 11, (4, 12))
    with torch.no_grad():
        expected, expected_state = net(x)
        prime_logits, state = net(x[:, :5])
        step = Stepper(net)
        assert bool(step.kind) is not layer_norm
        for t in range(5, 12):
            logits, state = step(x[:, t], state)
            torch.testing.assert_close(logits, expected[:, t], rtol=1e-4, atol=1e-5)
    for got, want in zip(state if model_type == "lstm" else [state], expected_state if model_type == "lstm"
                         else [expected_state], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_step_from_no_state_starts_at_zero() -> None:
    net = CharRNNNet(Architecture(7, "lstm", wordvec_size=4, rnn_size=5, num_layers=2)).eval()
    x = torch.tensor([3, 1])
    with torch.no_grad():
        torch.testing.assert_close(Stepper(net)(x, None)[0], net(x[:, None])[0][:, 0])


def test_draws_follow_the_distribution_and_skip_impossible_tokens() -> None:
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    logits = probs.log().repeat(20000, 1)
    counts = torch.bincount(pick(logits, 1.0, generator=torch.Generator().manual_seed(0)), minlength=5)
    assert counts[1] == counts[4] == 0
    torch.testing.assert_close(counts / counts.sum(), probs, atol=0.015, rtol=0)


def test_given_uniforms_decide_the_draw() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]] * 4)  # four equally likely tokens
    assert pick(logits, 1.0, uniform=torch.tensor([0.0, 0.3, 0.6, 0.99])).tolist() == [0, 1, 2, 3]
    assert pick(logits, 1.0, uniform=torch.tensor([0.999999])[[0, 0, 0, 0]]).tolist() == [3, 3, 3, 3]
