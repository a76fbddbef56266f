"""The search space the tuning tests search."""

from __future__ import annotations

# Trials of configs/debug.yaml's size on the tiny corpus, four validations each, a second of training (the
# whole budget: tests that search the share say so).
SPACE = """
space:
  model.model_type: {choices: [gru, lstm]}
  model.wordvec_size: 16
  model.rnn_size: {choices: [16, 32]}
  model.num_layers: 1
  model.dropout: {low: 0.0, high: 0.3}
  model.weight_decay: null
  model.learning_rate: {low: 0.001, high: 0.02, log: true}
  model.lr_schedule: null
  model.warmup_steps: null
  model.min_lr_ratio: null
  model.state_reset_prob: null
  data.batch_size: {choices: [4, 8]}
  data.seq_length: 16
train_share: 1.0
reports: 4
pruner: {min_resource: 1, reduction_factor: 2}
"""
