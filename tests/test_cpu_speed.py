"""bench/cpu_speed.py's arithmetic: the FLOPs of a step, for the variant's own cell and shape."""

from __future__ import annotations

import pytest
import yaml

from bench.cpu_speed import CONFIG, step_flops, variant_shape


def test_a_variant_takes_its_shape_from_the_config_and_its_flags() -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    default = variant_shape(cfg, [])
    assert default == {k: cfg["model"].get(k, cfg["data"].get(k)) for k in default}
    lstm = variant_shape(cfg, ["--model.model_type", "lstm", "--data.batch_size", "32", "--data.seq_length", "128",
                               "--trainer.max_steps", "9"])
    assert lstm == default | {"model_type": "lstm", "batch_size": 32, "seq_length": 128}
    assert variant_shape(cfg, ["--model.model_type=lstm", "--model.layer_norm", "true", "--data.batch_size=32",
                               "--data.seq_length", "128"]) == lstm


def test_step_flops_count_the_gates_of_each_cell() -> None:
    shape = {"model_type": "lstm", "wordvec_size": 64, "rnn_size": 256, "num_layers": 2, "batch_size": 32,
             "seq_length": 128}
    # (64 + 256) inputs of layer 1 and (256 + 256) of layer 2, 4 gates of 256, the 256 x 65 head; x2 x3 per char
    assert step_flops(shape) == pytest.approx(2 * 3 * 4096 * ((320 + 512) * 4 * 256 + 256 * 65))
    assert step_flops(shape) / 1e9 == pytest.approx(21.35, abs=0.01)
    gru = step_flops(shape | {"model_type": "gru"}) - step_flops(shape | {"model_type": "rnn"})
    lstm = step_flops(shape) - step_flops(shape | {"model_type": "rnn"})
    assert gru / lstm == pytest.approx(2 / 3)  # 3 - 1 gates against 4 - 1
