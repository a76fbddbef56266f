"""The cosine schedule's factor (CharRNN.configure_optimizers): a linear warmup to 1, then half a cosine down
to min_lr_ratio at the last step, held there after it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from charrnn.model import CharRNN

TOTAL = 100


def cosine_factor(warmup_steps: int, min_lr_ratio: float):  # noqa: ANN201 (the schedule's own lambda)
    model = CharRNN(vocab=list("ab"), wordvec_size=4, rnn_size=4, num_layers=1, lr_schedule="cosine",
                    warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    model._trainer = SimpleNamespace(estimated_stepping_batches=TOTAL, precision="32-true")
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    return scheduler.lr_lambdas[0]


def test_warmup_rises_linearly_to_the_full_rate():
    factor = cosine_factor(warmup_steps=4, min_lr_ratio=0.1)
    assert [factor(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]  # step 4: the cosine's start


def test_the_cosine_ends_at_the_floor_on_the_last_step_and_stays_there():
    factor = cosine_factor(warmup_steps=10, min_lr_ratio=0.1)
    assert factor(10) == 1.0
    assert factor(10 + (TOTAL - 10) // 2) == pytest.approx(0.55, abs=1e-12)  # halfway: between 1 and the floor
    assert factor(TOTAL) == 0.1
    assert factor(TOTAL + 50) == 0.1
    assert all(factor(s) > factor(s + 1) for s in range(10, TOTAL))


def test_a_floor_of_zero_reaches_zero_and_without_warmup_the_first_step_is_full():
    factor = cosine_factor(warmup_steps=0, min_lr_ratio=0.0)
    assert factor(0) == 1.0
    assert factor(TOTAL) == 0.0


def test_a_floor_of_one_is_a_constant_rate():
    factor = cosine_factor(warmup_steps=0, min_lr_ratio=1.0)
    assert {factor(s) for s in range(TOTAL + 1)} == {1.0}
