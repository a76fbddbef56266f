"""The global RNG states as plain data (charrnn/ckpt/rng.py): saved, stored with weights_only, and set again,
every generator continues exactly where it was."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from charrnn.ckpt.rng import get_rng_states, set_rng_states


def draws() -> tuple[list[float], list[float], list[float], list[float]]:
    """A few draws from each generator, Gaussians included (Python and NumPy cache one of every pair)."""
    return ([random.random() for _ in range(3)] + [random.gauss(0, 1)],
            np.random.rand(3).tolist() + [float(np.random.standard_normal())],
            torch.rand(3).tolist(), torch.randn(3).tolist())


def test_states_set_again_repeat_every_generators_draws():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # each generator now holds a cached Gaussian
    states = get_rng_states()
    expected = draws()
    draws()  # moves every generator on
    set_rng_states(states)
    assert draws() == expected


def test_states_are_plain_data_that_weights_only_loading_accepts():
    random.seed(4), np.random.seed(5), torch.manual_seed(6)
    buffer = io.BytesIO()
    torch.save(get_rng_states(), buffer)
    expected = draws()
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True))
    assert draws() == expected

