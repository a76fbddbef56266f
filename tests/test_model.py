"""The network and the carried hidden state of stateful truncated BPTT."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import asdict

import lightning as L
import pytest
import torch

from charrnn.model import CharRNN
from charrnn.net import CharRNNNet, zero_some_rows
from charrnn.net_spec import ARCHITECTURE_FIELDS, Architecture

VOCAB = list("abcdefgh")


@pytest.mark.parametrize("model_type", ["lstm", "gru", "rnn"])
def test_shapes_for_every_cell(model_type):
    net = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=6, num_layers=2, dropout=0.1))
    logits, state = net(torch.randint(0, 8, (3, 5)))
    assert logits.shape == (3, 5, 8)
    first = state[0] if model_type == "lstm" else state
    assert first.shape == (2, 3, 6)


def test_unknown_cell_is_named():
    with pytest.raises(ValueError, match="model_type 'transformer'"):
        CharRNNNet(Architecture(8, "transformer"))  # type: ignore[arg-type]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, len(VOCAB), (2, 4))
    return x, x.roll(-1, dims=1)


def test_state_is_carried_detached_and_reset_where_torch_rnn_resets_it():
    model = CharRNN(VOCAB, rnn_size=8, num_layers=1, wordvec_size=4)
    assert model.hidden is None
    model.training_step(batch(), 0)
    carried = model.hidden
    assert carried is not None and not any(s.requires_grad for s in carried)
    model.training_step(batch(), 1)
    assert not torch.equal(model.hidden[0], carried[0])  # it moved on from the carried state
    model.on_validation_epoch_start()
    model.validation_step(batch(), 0)
    assert model.eval_hidden is not None and model.hidden is not None  # validation has its own state
    model.on_validation_epoch_end()
    assert model.hidden is None
    model.training_step(batch(), 2)
    b = batch()
    model.training_step(b, 0)  # batch 0 of an epoch starts from a fresh state, whatever was carried
    assert torch.equal(model.hidden[0], model._step(b, None)[1][0])


def test_the_carried_state_changes_the_loss():
    torch.manual_seed(0)
    model = CharRNN(VOCAB, rnn_size=8, num_layers=1, wordvec_size=4)
    b = batch()
    fresh, _ = model._step(b, None)
    model.training_step(batch(), 0)
    carried, _ = model._step(b, model.hidden)
    assert not torch.isclose(fresh, carried)


def test_zero_some_rows():
    h = (torch.ones(2, 1000, 3), torch.ones(2, 1000, 3))
    assert torch.equal(zero_some_rows(h, 0.0)[0], h[0])
    assert zero_some_rows(h, 1.0)[1].abs().sum() == 0
    kept = zero_some_rows(h, 0.5)
    rows = kept[0][0, :, 0]
    assert 350 < rows.sum() < 650 and torch.equal(kept[0][1, :, 0], rows) and torch.equal(kept[1][0, :, 0], rows)


def test_hidden_state_is_not_a_buffer():
    model = CharRNN(VOCAB)
    model.training_step(batch(), 0)
    assert not list(model.buffers()) and "hidden" not in model.state_dict()


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
def test_layer_norm_variant_keeps_the_state_layout(model_type):
    torch.manual_seed(0)
    net = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=6, num_layers=3, layer_norm=True))
    x = torch.randint(0, 8, (2, 5))
    logits, state = net(x)
    first = state[0] if model_type == "lstm" else state
    assert logits.shape == (2, 5, 8) and first.shape == (3, 2, 6) and len(net.norms) == 3
    # feeding the sequence in two halves with the carried state gives the same logits
    a, s = net(x[:, :2])
    b, _ = net(x[:, 2:], s)
    assert torch.allclose(torch.cat([a, b], dim=1), logits, atol=1e-6)


def test_tied_weights_share_one_matrix():
    net = CharRNNNet(Architecture(8, "lstm", wordvec_size=6, rnn_size=6, num_layers=1, tie_weights=True))
    assert net.head.weight is net.embed.weight
    untied = CharRNNNet(Architecture(8, "lstm", wordvec_size=6, rnn_size=6, num_layers=1))
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in untied.parameters()) - 48
    with pytest.raises(ValueError, match="wordvec_size == rnn_size"):
        CharRNNNet(Architecture(8, "lstm", wordvec_size=4, rnn_size=6, tie_weights=True))


@pytest.mark.parametrize("layout", ["saved architecture", "hyperparameters only (before it was saved)"])
def test_options_survive_a_checkpoint(tmp_path, layout):
    from charrnn.ckpt.load import read_model

    model = CharRNN(VOCAB, wordvec_size=6, rnn_size=6, num_layers=2, layer_norm=True, tie_weights=True,
                    weight_drop=0.25)
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    assert ckpt["architecture"] == asdict(model.net.architecture) and "hidden_is_pair" not in ckpt["charrnn_resume"]
    if layout != "saved architecture":  # as written before: no architecture key, an unread hidden_is_pair
        del ckpt["architecture"]
        ckpt["charrnn_resume"]["hidden_is_pair"] = False
    torch.save(ckpt, tmp_path / "m.ckpt")
    loaded = read_model(tmp_path / "m.ckpt")
    net = loaded.net
    assert loaded.architecture == Architecture(len(VOCAB), "lstm", 6, 6, 2, 0.0, True, True, 0.25)
    assert net.head.weight is net.embed.weight and hasattr(net, "norms") and net.weight_drop == 0.25
    x = torch.randint(0, len(VOCAB), (1, 4))
    assert torch.equal(net(x)[0], model.net.eval()(x)[0])


def test_the_model_flags_are_the_architectures_fields():
    """CharRNN spells the Architecture's fields out for LightningCLI's --model.* flags: the same names and
    defaults, in the same order, each typed as the field or as a range of it (``PositiveInt`` for ``int``)."""
    params = list(inspect.signature(CharRNN).parameters.values())[1:len(ARCHITECTURE_FIELDS) + 1]
    hints = typing.get_type_hints(CharRNN.__init__)
    fields = {f.name: f for f in dataclasses.fields(Architecture)}
    assert [p.name for p in params] == list(ARCHITECTURE_FIELDS)
    for p in params:
        field = typing.get_type_hints(Architecture)[p.name]
        assert p.default == fields[p.name].default
        assert issubclass(hints[p.name], field) if field in (int, float) else hints[p.name] == field


def test_best_val_loss_travels_in_the_checkpoint():
    model = CharRNN(VOCAB)
    model.best_val_loss = 1.25
    ckpt: dict = {}
    model.on_save_checkpoint(ckpt)
    restored = CharRNN(VOCAB)
    restored.on_load_checkpoint(ckpt)
    assert restored.best_val_loss == 1.25


class Recorder(L.pytorch.loggers.Logger):
    """Keeps what Lightning hands a logger: (step, metrics) per call."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    name, version = "recorder", 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class TrueGradNorm(L.Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:  # before clipping, as logged
        self.norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters()])))


def test_logged_training_scalars_belong_to_the_step_they_are_logged_at(tmp_path):
    """bits/char and the gradient norm are computed only on the steps the logger writes, and are those
    steps' own values (not those of an earlier step)."""
    import math

    from charrnn.data import CharDataModule
    from tests.support.texts import TINY_TEXT

    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    dm = CharDataModule(str(tmp_path / "tiny.txt"), batch_size=4, seq_length=16, url=None)
    model = CharRNN(dm.vocab, rnn_size=16, num_layers=1, wordvec_size=8, lr_schedule="constant")
    logger, norms = Recorder(), TrueGradNorm()
    L.Trainer(accelerator="cpu", max_steps=12, limit_val_batches=0, log_every_n_steps=3, gradient_clip_val=0.1,
              logger=logger, callbacks=[norms], enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, dm)
    train = [(step, m) for step, m in logger.records if "train/loss" in m]
    assert [step for step, _ in train] == [2, 5, 8, 11]
    for step, metrics in train:
        assert metrics["train/grad_norm"] == pytest.approx(norms.norms[step], rel=1e-6)
        assert math.isclose(metrics["train/bpc"], metrics["train/loss"] / math.log(2), rel_tol=1e-6)
    assert len(set(norms.norms)) == len(norms.norms)  # the norms differ from step to step: the check can fail


def test_log_every_n_steps_0_trains_and_writes_no_training_scalars(tmp_path):
    from charrnn.data import CharDataModule
    from tests.support.texts import TINY_TEXT

    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    dm = CharDataModule(str(tmp_path / "tiny.txt"), batch_size=4, seq_length=16, url=None)
    model = CharRNN(dm.vocab, rnn_size=16, num_layers=1, wordvec_size=8, lr_schedule="constant")
    logger = Recorder()
    L.Trainer(accelerator="cpu", max_steps=4, limit_val_batches=0, log_every_n_steps=0, logger=logger,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(model, dm)
    assert model.global_step == 4
    assert not [m for _, m in logger.records if "train/loss" in m or "train/grad_norm" in m]


@pytest.mark.parametrize("model_type", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_zero_state_is_where_forward_starts(model_type, layer_norm):
    torch.manual_seed(0)
    net = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=6, num_layers=3, layer_norm=layer_norm))
    x = torch.randint(0, 8, (2, 5))
    fresh, state = net(x)
    zero = net.zero_state(2)
    parts = zero if model_type == "lstm" else (zero,)
    assert [s.shape for s in parts] == [(3, 2, 6)] * (2 if model_type == "lstm" else 1)
    assert torch.equal(net(x, zero)[0], fresh) and not torch.equal(net(x, state)[0], fresh)


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_weight_drop_masks_recurrent_weights_only_while_training(model_type, layer_norm):
    torch.manual_seed(0)
    net = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=32, num_layers=2, layer_norm=layer_norm,
                                  weight_drop=0.4))
    plain = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=32, num_layers=2, layer_norm=layer_norm))
    plain.load_state_dict(net.state_dict())
    x = torch.randint(0, 8, (3, 6))
    assert torch.equal(net.eval()(x)[0], plain.eval()(x)[0])  # sampling and validation see the weights as they are
    net.train()
    assert not torch.equal(net(x)[0], plain.train()(x)[0])
    net(x)[0].sum().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    for name, grad in grads.items():
        zero = float((grad == 0).float().mean())
        if "weight_hh" in name:  # the dropped recurrent weights get no gradient this step
            assert 0.3 < zero < 0.5, (name, zero)
        elif "weight_ih" in name:
            assert zero < 0.05, (name, zero)


def test_weight_drop_must_be_a_fraction():
    with pytest.raises(ValueError, match="weight_drop 1.0"):
        CharRNNNet(Architecture(8, weight_drop=1.0))


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
def test_map_state_keeps_the_layout(model_type):
    from charrnn.net import map_state, state_from_tensors, state_tensors

    state = CharRNNNet(Architecture(8, model_type, wordvec_size=4, rnn_size=6, num_layers=2)).zero_state(3)
    roundtrip = state_from_tensors(state_tensors(state))
    assert type(roundtrip) is type(state) and len(state_tensors(roundtrip)) == (2 if model_type == "lstm" else 1)
    doubled = map_state(lambda a, b: torch.cat([a + 1, b], 1), state, state)
    assert type(doubled) is type(state)
    assert [t.shape for t in state_tensors(doubled)] == [(2, 6, 6)] * len(state_tensors(state))
    assert all(bool((t[:, :3] == 1).all()) for t in state_tensors(doubled))
