"""What a checkpoint adds for an exact resume (charrnn/ckpt/resume_state.py): the carried hidden state and the
RNG states, captured and restored; a run of several processes restarts them fresh, with a warning."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from charrnn.ckpt import resume_state


def one_process() -> SimpleNamespace:
    return SimpleNamespace(world_size=1)


def test_an_lstm_state_round_trips_as_its_pair():
    h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    saved = resume_state.capture(None, (h, c))
    assert saved["world_size"] == 1 and "hidden_is_pair" not in saved
    restored = resume_state.restore(saved, one_process(), torch.device("cpu"))
    assert isinstance(restored, tuple) and len(restored) == 2
    assert torch.equal(restored[0], h) and torch.equal(restored[1], c)


def test_a_gru_state_round_trips_as_one_tensor():
    h = torch.randn(1, 2, 5)
    saved = resume_state.capture(None, h)
    restored = resume_state.restore(saved, one_process(), torch.device("cpu"))
    assert isinstance(restored, torch.Tensor) and torch.equal(restored, h)


def test_no_carried_state_restores_as_none_and_still_sets_the_random_stream():
    torch.manual_seed(0)
    saved = resume_state.capture(None, None)
    expected = torch.rand(4)
    assert saved["hidden"] is None
    assert resume_state.restore(saved, one_process(), torch.device("cpu")) is None
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(("saved_by", "resumed_by"), [(2, 2), (2, 1), (1, 2)])
def test_several_processes_restart_fresh_with_a_warning(saved_by, resumed_by):
    saved = resume_state.capture(None, torch.ones(1, 1, 2))
    saved["world_size"] = saved_by
    torch.manual_seed(1)
    expected = torch.rand(4)
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="resuming a multi-process run: RNG and carried hidden states restart fresh"):
        assert resume_state.restore(saved, SimpleNamespace(world_size=resumed_by), torch.device("cpu")) is None
    assert torch.equal(torch.rand(4), expected)  # the saved random stream was not set
