"""CharRNN: the LightningModule that trains a CharRNNNet with stateful truncated BPTT."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveInt
from torch import Tensor

from charrnn.ckpt import resume_state
from charrnn.ckpt.load import ARCHITECTURE_KEY, CheckpointError
from charrnn.finetune import initial_weights
from charrnn.flag_ranges import FiniteNonNegativeFloat, FinitePositiveFloat, HalfOpenUnitInterval
from charrnn.graph_step import GraphTraining
from charrnn.lightning_private import attached_trainer, logger_writes_this_step
from charrnn.net import CharRNNNet, State, detach_state, zero_some_rows
from charrnn.net_spec import ARCHITECTURE_FIELDS, Architecture, ModelType
from charrnn.train_flags import check_model_flags
from charrnn.vocab import Vocab

LN2 = math.log(2.0)


class CharRNN(L.LightningModule):
    """Character-level language model.

    The network's arguments (``model_type`` to ``weight_drop``) are :class:`~charrnn.net_spec.Architecture`'s
    fields, spelled out here because LightningCLI makes the ``--model.*`` flags from this signature; their
    defaults are the Architecture's own, and a test holds the names and types to its fields.

    Args:
        vocab: tokens in index order; taken from the data (linked by the CLI), stored in checkpoints.
        model_type: ``lstm``, ``gru`` or ``rnn``.
        wordvec_size: embedding width.
        rnn_size: hidden units per layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between layers and before the output layer.
        layer_norm: LayerNorm on each recurrent layer's output.
        tie_weights: share the embedding with the output layer (needs ``wordvec_size == rnn_size``).
        weight_drop: DropConnect on the recurrent weights while training (AWD-LSTM's regulariser).
        learning_rate: Adam's peak learning rate.
        weight_decay: AdamW weight decay (0 is plain Adam, as torch-rnn).
        lr_schedule: ``step`` (× ``lr_decay_factor`` every ``lr_decay_every`` epochs, torch-rnn's),
            ``cosine`` (warmup, then down to ``min_lr_ratio`` over the run) or ``constant``.
        lr_decay_every: epochs between steps of the ``step`` schedule.
        lr_decay_factor: multiplier at each step of the ``step`` schedule.
        warmup_steps: linear warmup steps of the ``cosine`` schedule.
        min_lr_ratio: final learning rate of the ``cosine`` schedule, relative to ``learning_rate``.
        state_reset_prob: chance per stream and step that its carried state is zeroed. Sampling starts
            from a zero state, which pure carried-state training rarely shows the model; a small value
            (0.01) teaches it to start well ("ROMEO:" is followed by a new line, not noise).
        init_from: a checkpoint or export whose weights a new run starts from (fine-tuning); its
            architecture and vocabulary must match (the CLI takes both from it). Not used on resume.
        cuda_graph: run each training step (forward, backward, clipping, optimizer update) as one
            replayed CUDA graph (:mod:`charrnn.graph_step`): faster on a GPU for small models, whose steps
            wait on kernel launches. One GPU, ``--trainer.precision 32-true``; without CUDA the step runs
            uncaptured.
    """

    def __init__(
        self,
        vocab: list[str],
        model_type: ModelType = Architecture.model_type,
        wordvec_size: PositiveInt = Architecture.wordvec_size,
        rnn_size: PositiveInt = Architecture.rnn_size,
        num_layers: PositiveInt = Architecture.num_layers,
        dropout: ClosedUnitInterval = Architecture.dropout,
        layer_norm: bool = Architecture.layer_norm,
        tie_weights: bool = Architecture.tie_weights,
        weight_drop: HalfOpenUnitInterval = Architecture.weight_drop,
        learning_rate: FiniteNonNegativeFloat = 2e-3,
        weight_decay: FiniteNonNegativeFloat = 0.0,
        lr_schedule: Literal["step", "cosine", "constant"] = "step",
        lr_decay_every: PositiveInt = 5,
        lr_decay_factor: FinitePositiveFloat = 0.5,
        warmup_steps: NonNegativeInt = 0,
        min_lr_ratio: ClosedUnitInterval = 0.1,
        state_reset_prob: ClosedUnitInterval = 0.0,
        init_from: str | None = None,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vocab = Vocab(vocab)
        check_model_flags(self.hparams, len(self.vocab))
        self.net = CharRNNNet(Architecture(len(self.vocab), **{k: self.hparams[k] for k in ARCHITECTURE_FIELDS}))
        self.best_val_loss: float | None = None
        # Carried across batches; a plain attribute, never a buffer (DDP would broadcast rank 0's).
        self.hidden: State | None = None
        self._resume: dict[str, Any] | None = None
        # --model.cuda_graph: the step, backward and update in one captured graph (graph_step.py)
        self.graph = GraphTraining(state_reset_prob) if cuda_graph else None
        self._initialised = False  # init_from's weights are loaded (once per process)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self.net(x, state)

    def _step(self, batch: tuple[Tensor, Tensor], state: State | None) -> tuple[Tensor, State]:
        x, y = batch  # (B, T) each
        logits, state = self.net(x, state)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten()), detach_state(state)

    def _log_loss(self, stage: str, loss: Tensor, **kwargs: bool) -> None:
        self.log(f"{stage}/loss", loss, prog_bar=True, **kwargs)  # also read by the progress bar
        if stage != "train" or self._logger_writes_this_step():
            self.log(f"{stage}/bpc", loss / LN2, **kwargs)

    def _logger_writes_this_step(self) -> bool:
        """Whether Lightning hands this training step's metrics to the logger. What only the logger reads
        (bits per character, the gradient norm) is computed on those steps alone, as each self.log costs time."""
        return attached_trainer(self) is not None and logger_writes_this_step(self.trainer)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if batch_idx == 0:  # a new epoch; a resumed one continues at batch_idx > 0 with the restored state
            self.hidden = None
        if self.graph is not None:
            return self._graph_step(batch)
        if self.hidden is not None and self.hparams.state_reset_prob > 0:
            self.hidden = zero_some_rows(self.hidden, self.hparams.state_reset_prob)
        loss, self.hidden = self._step(batch, self.hidden)
        self._log_loss("train", loss)
        return loss

    def _graph_step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """The training step of ``--model.cuda_graph``: the weights are updated when it returns."""
        loss, grad_norm, self.hidden = self.graph.step(self.trainer, self.net, self.optimizers(use_pl_optimizer=False),
                                                       batch, self.hidden)
        self._log_loss("train", loss)
        if self._logger_writes_this_step():
            self.log("train/grad_norm", grad_norm)
        return loss

    # Lightning's backward, gradient zeroing and update, which the graph step has done itself (its gradients
    # live in the graph's memory: never set to None).
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        if self.graph is not None:
            return optimizer_closure()  # runs training_step
        return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        if self.graph is None:
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        if self.graph is None:
            super().backward(loss, *args, **kwargs)

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.graph] if self.graph is not None else []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, self.eval_hidden = self._step(batch, self.eval_hidden)
        self._log_loss("val", loss, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, self.eval_hidden = self._step(batch, self.eval_hidden)
        self._log_loss("test", loss, sync_dist=True)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Per-stream mean loss (nats/char) of each batch of the test split."""
        x, y = batch
        logits, self.eval_hidden = self.net(x, self.eval_hidden if batch_idx else None)
        return F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(dim=1)

    # The state starts fresh each epoch (see training_step) and around every evaluation, as in torch-rnn.
    def _reset_eval(self) -> None:
        self.eval_hidden: State | None = None

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = _reset_eval

    def on_validation_epoch_end(self) -> None:
        self.hidden = None
        if attached_trainer(self) is None or self.trainer.sanity_checking:
            return
        val = self.trainer.callback_metrics.get("val/loss")
        if val is not None:
            # TensorBoard's HPARAMS tab shows hp_metric beside the hyperparameters: make it the best val loss.
            self.best_val_loss = min(float(val), self.best_val_loss or float("inf"))
            self.log("hp_metric", self.best_val_loss, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before clipping, so spikes show; only on logging steps, as the norm costs a pass over the weights.
        if self._logger_writes_this_step():
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    # ---- fine-tuning and exact resume ---------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._init_once()

    def _init_once(self) -> None:
        """``--model.init_from``'s weights, for fit and for validate/test/predict alike (measuring a base
        model, a torch-rnn .t7 included); a ``--ckpt_path`` brings its own weights instead."""
        if self.hparams.init_from and self.trainer.ckpt_path is None and not self._initialised:
            self.init_weights_from(self.hparams.init_from)
            self._initialised = True

    def on_validation_start(self) -> None:
        if self.trainer.state.fn != "fit":  # fit loads them once, in on_fit_start
            self._init_once()

    on_test_start = on_predict_start = on_validation_start

    def init_weights_from(self, path: str) -> None:
        state = initial_weights(path, self.vocab)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"--model.init_from {path}: its architecture differs from --model's: {e}") from None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ARCHITECTURE_KEY] = asdict(self.net.architecture)  # what readers build the network from
        checkpoint[resume_state.KEY] = resume_state.capture(attached_trainer(self), self.hidden)
        checkpoint["best_val_loss"] = self.best_val_loss  # hp_metric goes on from it after a resume

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resume = checkpoint.get(resume_state.KEY)
        self.best_val_loss = checkpoint.get("best_val_loss")

    def on_train_start(self) -> None:
        if self._resume is not None:
            self.hidden = resume_state.restore(self._resume, self.trainer, self.device)
            self._resume = None

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union of return shapes)
        hp = self.hparams
        # The fused kernel updates all weights in one call instead of looping over the tensors.
        # Lightning refuses gradient clipping with it under mixed precision (it unscales internally).
        mixed = attached_trainer(self) is not None and "mixed" in str(self.trainer.precision)
        fused = not mixed and all(p.device.type in ("cpu", "cuda", "mps") for p in self.parameters())
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                      fused=fused)
        if hp.lr_schedule == "constant":
            return optimizer
        if hp.lr_schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, hp.lr_decay_every, hp.lr_decay_factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("--model.lr_schedule cosine needs --trainer.max_steps or --trainer.max_epochs")
        warmup = hp.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
