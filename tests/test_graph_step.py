"""--model.cuda_graph: the whole training step in one function over static tensors.

On a CPU the step runs uncaptured, so these tests check everything but the capture itself: the same
losses, gradient norms and weights as Lightning's own step, with clipping, a schedule, dropout, weight drop and
the carried state reset by validation. With CUDA, the captured graph is checked against the eager step (marked
`cuda`: skipped, with the reason shown, on a machine without one).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from charrnn.data import CharDataModule
from charrnn.graph_step import Clip, GraphStep, portable_optimizer_state
from charrnn.model import CharRNN
from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from tests.support.texts import TINY_TEXT


class Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grad_norms: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, *_: object) -> None:
        self.losses.append(float(outputs["loss"]))
        if "train/grad_norm" in trainer.callback_metrics:
            self.grad_norms.append(float(trainer.callback_metrics["train/grad_norm"]))


def train(tmp_path, cuda_graph: bool, ckpt_path=None, **trainer_args) -> tuple[CharRNN, Losses, L.Trainer]:
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    L.seed_everything(7)
    dm = CharDataModule(str(tmp_path / "tiny.txt"), batch_size=4, seq_length=16, url=None)
    model = CharRNN(dm.vocab, rnn_size=24, num_layers=2, wordvec_size=8, dropout=0.2, weight_drop=0.2,
                    learning_rate=0.01, lr_schedule="cosine", warmup_steps=3, cuda_graph=cuda_graph)
    losses = Losses()
    args = dict(accelerator="cpu", devices=1, max_steps=14, val_check_interval=5, check_val_every_n_epoch=None,
                limit_val_batches=2, gradient_clip_val=0.2, log_every_n_steps=2, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[losses])
    trainer = L.Trainer(**{**args, **trainer_args})
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model, losses, trainer


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return train(tmp_path_factory.mktemp("eager"), cuda_graph=False)


def test_the_static_step_trains_as_lightnings_own(tmp_path, eager):
    model, losses, trainer = train(tmp_path, cuda_graph=True)
    ref_model, ref, ref_trainer = eager
    assert trainer.global_step == ref_trainer.global_step == 14  # Lightning counts the steps the graph makes
    assert losses.losses == ref.losses
    assert len(losses.grad_norms) == len(ref.grad_norms) > 3  # a bound: only that the comparison below is not empty
    assert losses.grad_norms == pytest.approx(ref.grad_norms, rel=1e-6)
    assert max(ref.grad_norms) > 0.2  # clipping did act
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == ref_trainer.optimizers[0].param_groups[0]["lr"]


def test_without_clipping_the_weights_differ(tmp_path, eager):
    """The control: the comparison above notices a step that differs from Lightning's."""
    model, losses, _ = train(tmp_path, cuda_graph=True, gradient_clip_val=None)
    assert losses.losses[0] == eager[1].losses[0] and losses.losses[-1] != eager[1].losses[-1]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("precision", "bf16-mixed", "--trainer.precision 32-true"),
    ("accumulate_grad_batches", 2, "--trainer.accumulate_grad_batches"),
])
def test_settings_a_graph_cannot_follow_are_refused(tmp_path, flag, value, message):
    with pytest.raises(ValueError, match=message):
        train(tmp_path, cuda_graph=True, **{flag: value})


def test_a_batch_of_another_shape_is_refused():
    net = CharRNNNet(Architecture(8, rnn_size=6, num_layers=1, wordvec_size=4))
    opt = torch.optim.Adam(net.parameters())
    x = torch.randint(0, 8, (3, 5))
    step = GraphStep(net, opt, (x, x), net.zero_state(3), Clip(1.0), 0.0)
    step((x, x), None)
    with pytest.raises(ValueError, match="--model.cuda_graph: a batch of shape \\(2, 5\\)"):
        step((x[:2], x[:2]), step.state)


def test_checkpoints_keep_a_plain_learning_rate():
    lr = torch.tensor(0.003)
    saved = {"state": {}, "param_groups": [{"lr": lr, "capturable": True, "params": [0]}]}
    portable = portable_optimizer_state(saved)
    assert portable["param_groups"][0] == {"lr": pytest.approx(0.003), "capturable": False, "params": [0]}
    assert type(portable["param_groups"][0]["lr"]) is float and saved["param_groups"][0]["lr"] is lr


@pytest.mark.cuda
def test_the_captured_graph_repeats_the_eager_step():
    def run(capture: bool) -> tuple[list[float], dict]:
        torch.manual_seed(0)
        net = CharRNNNet(Architecture(20, num_layers=2, rnn_size=32, wordvec_size=8, dropout=0.0)).cuda()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s))
        data = torch.randint(0, 20, (12, 4, 17), device="cuda")
        step = GraphStep(net, opt, (data[0, :, :-1], data[0, :, 1:]), net.zero_state(4), Clip(0.1), 0.0)
        if not capture:
            step.graph = None
        assert (step.graph is not None) == capture
        losses, state = [], None
        for batch in data:
            loss, _ = step((batch[:, :-1], batch[:, 1:]), state)
            losses.append(float(loss))
            state = step.state
            sched.step()
        return losses, net.state_dict()

    graph_losses, graph_weights = run(True)
    eager_losses, eager_weights = run(False)
    assert graph_losses == pytest.approx(eager_losses, rel=1e-4)
    for k, v in graph_weights.items():
        torch.testing.assert_close(v, eager_weights[k], rtol=1e-3, atol=1e-5)


def test_a_graph_run_resumes_exactly(tmp_path, eager):
    """Resumed from its step-7 checkpoint (with and without the option): the weights of the whole run."""
    saver = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=7, save_top_k=-1)
    train(tmp_path, cuda_graph=True, enable_checkpointing=True, callbacks=[saver])
    path = tmp_path / "ckpt" / "epoch=0-step=7.ckpt"
    ckpt = torch.load(path, weights_only=True)
    assert type(ckpt["optimizer_states"][0]["param_groups"][0]["lr"]) is float
    for cuda_graph in (True, False):
        model, *_ = train(tmp_path, cuda_graph, ckpt_path=path)
        for a, b in zip(model.state_dict().values(), eager[0].state_dict().values(), strict=True):
            assert torch.equal(a, b), cuda_graph


@pytest.mark.parametrize("steps_before", [0, 2])
def test_the_warm_up_before_capture_is_undone(steps_before):
    """What capture does around its warm-up steps (snapshot, steps, restore), run on a CPU: the next
    step is the one that would have come without them (dropout draws included)."""
    def setup() -> tuple[CharRNNNet, GraphStep, list[tuple[torch.Tensor, torch.Tensor]]]:
        torch.manual_seed(0)
        net = CharRNNNet(Architecture(12, num_layers=2, rnn_size=16, wordvec_size=8, dropout=0.3))
        data = torch.randint(0, 12, (steps_before + 1, 3, 9))
        batches = [(b[:, :-1], b[:, 1:]) for b in data]
        step = GraphStep(net, torch.optim.Adam(net.parameters(), lr=0.01), batches[0], net.zero_state(3),
                         Clip(0.5), 0.2)
        for batch in batches[:steps_before]:
            step(batch, step.state)
        return net, step, batches

    net, step, batches = setup()
    expected = float(step(batches[-1], step.state)[0]), [p.clone() for p in net.parameters()]
    net, step, batches = setup()
    saved = step._snapshot()
    for _ in range(3):
        step._body()
    assert not torch.equal(next(net.parameters()), saved["params"][0])  # the warm-up did train
    step._restore(saved)
    loss = float(step(batches[-1], step.state)[0])
    assert loss == expected[0]
    for p, q in zip(net.parameters(), expected[1], strict=True):
        assert torch.equal(p, q)
