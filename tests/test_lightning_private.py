"""Each use of Lightning's private API (charrnn/lightning_private.py), checked against the installed Lightning.

A failure here after a Lightning upgrade names the function whose internals moved: mend it there.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from charrnn import lightning_private as private


@contextmanager
def still_there(name: str) -> Iterator[None]:
    try:
        yield
    except AttributeError as e:
        pytest.fail(f"lightning {L.__version__} changed what charrnn.lightning_private.{name} reads ({e}); "
                    "update that function")


class Probe(L.LightningModule):
    """A one-weight model that asks ``ask(trainer)`` in each training step and records the answers."""

    def __init__(self, ask: Callable[[L.Trainer], Any]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.ask, self.answers = ask, []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.answers.append(self.ask(self.trainer))
        return (self.weight * batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(model: L.LightningModule, tmp_path: Path, callbacks: list | None = None, **trainer: Any) -> L.Trainer:
    data = DataLoader(torch.ones(8, 1), batch_size=1)
    t = L.Trainer(**{"default_root_dir": tmp_path, "logger": False, "enable_checkpointing": bool(callbacks),
                     "callbacks": callbacks, "enable_progress_bar": False, "enable_model_summary": False,
                     "num_sanity_val_steps": 0, **trainer})
    t.fit(model, data, data)
    return t


@pytest.mark.parametrize(("every", "expected"), [(3, [2, 5, 8, 11]), (1, list(range(12))), (0, [])])
def test_logger_writes_this_step_follows_log_every_n_steps(tmp_path, every, expected):
    with still_there("logger_writes_this_step"):
        model = Probe(private.logger_writes_this_step)
        fit(model, tmp_path, max_steps=12, log_every_n_steps=every)
    assert [step for step, writes in enumerate(model.answers) if writes] == expected


def test_batches_trained_this_epoch_counts_from_each_epoch_start(tmp_path):
    with still_there("batches_trained_this_epoch"):
        model = Probe(private.batches_trained_this_epoch)
        fit(model, tmp_path, max_steps=12)
    assert model.answers == [*range(8), *range(4)]


class AtBatchEnd(L.Callback):
    def __init__(self, ask: Callable[[L.Trainer, int], Any]) -> None:
        self.ask, self.answers = ask, []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.answers.append(self.ask(trainer, batch_idx))


class ValidationSteps(AtBatchEnd):
    """Also records after which training batch each validation ran."""

    def __init__(self, ask: Callable[[L.Trainer, int], Any]) -> None:
        super().__init__(ask)
        self.validated_after: list[int] = []

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated_after.append(len(self.answers) - 1)


def test_validation_follows_batch_where_validation_runs(tmp_path):
    with still_there("validation_follows_batch"):
        probe = ValidationSteps(lambda trainer, _: private.validation_follows_batch(trainer))
        fit(Probe(lambda _: None), tmp_path, callbacks=[probe], max_steps=12, val_check_interval=3)
    said = [i for i, follows in enumerate(probe.answers) if follows]
    assert said == probe.validated_after
    assert said == [2, 5, 10]  # every third batch of each 8-batch epoch


def test_save_last_writes_last_ckpt_now(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=100)

    def save_at_third(trainer: L.Trainer, batch_idx: int) -> int:
        if batch_idx == 2:
            private.save_last(checkpoint, trainer)
        return private.last_saved_step(checkpoint)

    with still_there("save_last / last_saved_step"):
        probe = AtBatchEnd(save_at_third)
        fit(Probe(lambda _: None), tmp_path, callbacks=[checkpoint, probe], max_steps=5)
    assert probe.answers[:4] == [0, 0, 3, 3]
    # Lightning's own class writes no last.ckpt at the end of a run that saved one (ours does: model_checkpoint.py)
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_attached_trainer(tmp_path):
    with still_there("attached_trainer"):
        model = Probe(lambda trainer: private.attached_trainer(trainer.lightning_module))
        assert private.attached_trainer(model) is None
        trainer = fit(model, tmp_path, max_steps=2)
    assert model.answers == [trainer, trainer]


def test_disable_version_counter_replaces_a_file_of_the_same_name(tmp_path):
    def names(disable: bool) -> list[str]:
        directory = tmp_path / f"disabled-{disable}"
        directory.mkdir()
        (directory / "same.ckpt").write_bytes(b"an earlier file of that name")
        checkpoint = ModelCheckpoint(dirpath=directory, filename="same", every_n_train_steps=1)
        if disable:
            private.disable_version_counter(checkpoint)
        fit(Probe(lambda _: None), tmp_path, callbacks=[checkpoint], max_steps=1)
        return sorted(p.name for p in directory.iterdir())

    with still_there("disable_version_counter"):
        assert names(disable=True) == ["same.ckpt"]
    assert names(disable=False) == ["same-v1.ckpt", "same.ckpt"]  # what Lightning does by itself


def test_logger_versions(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path, name="runs")
    with still_there("version_left_to_lightning / next_version / set_version"):
        assert private.version_left_to_lightning(logger)
        (tmp_path / "runs" / "version_0").mkdir(parents=True)
        assert private.next_version(logger) == 1
        private.set_version(logger, 7)
        assert not private.version_left_to_lightning(logger)
    assert logger.version == 7 and logger.log_dir.endswith("version_7")


def test_the_cli_internals_the_callback_groups_use():
    import inspect

    from lightning.pytorch.cli import LightningCLI

    with still_there("build_trainer"):
        assert list(inspect.signature(LightningCLI._instantiate_trainer).parameters) == ["self", "config", "callbacks"]


def test_lightning_cli_applies_ckpt_path_in_the_step_we_replace():
    import inspect

    from lightning.pytorch.cli import LightningCLI

    with still_there("CLIWithOwnCheckpointSettings"):
        source = inspect.getsource(LightningCLI.__init__)
        steps = [source.index(s) for s in ("self.parse_arguments(", "self._parse_ckpt_path()",
                                           "self.before_instantiate_classes()")]
        assert steps == sorted(steps), "LightningCLI no longer applies --ckpt_path between parsing and instantiating"
        assert private.CLIWithOwnCheckpointSettings._parse_ckpt_path is not LightningCLI._parse_ckpt_path


def test_ask_to_stop_stops_after_the_step_as_sigterm_does(tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    def stop_at_third(trainer: L.Trainer, batch_idx: int) -> bool:
        if batch_idx == 2:
            private.ask_to_stop(trainer)
        return trainer.received_sigterm

    probe = AtBatchEnd(stop_at_third)
    with still_there("ask_to_stop"), pytest.raises(SIGTERMException):
        fit(Probe(lambda _: None), tmp_path, callbacks=[probe], max_steps=8)
    assert probe.answers == [False, False, True]  # the loop stopped right after the step that asked


def test_hide_false_alarms_leaves_out_what_lightning_prints_today(tmp_path, monkeypatch, recwarn):
    """Lightning still prints its tip, warns about a non-empty checkpoint directory and about the model
    summary's size under bf16-mixed (so the filters are not stale), and after ``hide_false_alarms`` none of
    them reaches the user."""
    from lightning_utilities.core import rank_zero

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    def trainer_in_a_used_directory() -> None:
        (tmp_path / "ckpt").mkdir(exist_ok=True)
        (tmp_path / "ckpt" / ".lock").touch()
        fit(Probe(lambda trainer: None), tmp_path, max_steps=1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt")],
            precision="bf16-mixed", enable_model_summary=True)

    def warned() -> list[str]:
        return [str(w.message) for w in recwarn if "exists and is not empty" in str(w.message)
                or "is not supported by the model summary" in str(w.message)]

    said: list[str] = []
    monkeypatch.setattr(rank_zero.log, "filters", [])  # as before any run of the CLI in this process
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    rank_zero.log.addHandler(handler := Keep())
    try:
        trainer_in_a_used_directory()
        assert [m for m in said if m.startswith(private.TIP)] != []
        assert len(warned()) == 2, warned()
        said.clear()
        recwarn.clear()
        private.hide_false_alarms()
        trainer_in_a_used_directory()
    finally:
        rank_zero.log.removeHandler(handler)
    assert [m for m in said if m.startswith(private.TIP)] == []
    assert warned() == []
