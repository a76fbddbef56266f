"""The LightningCLI behind ``python train.py fit|validate|test|predict``."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from charrnn import resume
from charrnn.checkpoint import CheckpointError, model_spec
from charrnn.checkpoint_io import SafeCheckpointIO
from charrnn.data import CharDataModule
from charrnn.errors import UsageError
from charrnn.model import CharRNN


class CharRNNCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The vocabulary comes from the data, never from the config.
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")

    def _subconfig(self) -> Any:
        return self.config[self.config.subcommand] if self.config.get("subcommand") else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        # Check an explicit --ckpt_path before anything reads it; `last` is resolved once the
        # Trainer knows its checkpoint directories (before_fit, ...).
        path = self._subconfig().get("ckpt_path")
        if path and path not in ("last", *resume.SPECIAL):
            try:
                resume.load_checked(path, fitting=self.config.get("subcommand") == "fit")
            except CheckpointError as e:
                raise CheckpointError(f"--ckpt_path {e}") from None

    def before_instantiate_classes(self) -> None:
        """Fine-tuning: ``--model.init_from`` brings its architecture and (unless ``--data.vocab_from``
        says otherwise) its vocabulary, so one flag is enough."""
        cfg = self._subconfig()
        init = cfg.model.get("init_from")
        if not init:
            return
        try:
            architecture, _ = model_spec(init)
        except CheckpointError as e:
            raise CheckpointError(f"--model.init_from {e}") from None
        if not cfg.data.get("vocab_from"):
            cfg.data.vocab_from = init
        changed = [f"{k}={v!r} (config: {cfg.model[k]!r})" for k, v in architecture.items()
                   if k in cfg.model and cfg.model[k] != v]
        for k, v in architecture.items():
            if k in cfg.model:
                cfg.model[k] = v
        if changed:
            rank_zero_info(f"--model.init_from {init}: architecture taken from it: {', '.join(changed)}")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Saves through SafeCheckpointIO unless the config names another CheckpointIO plugin."""
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO())
        return super().instantiate_trainer(**{**kwargs, "plugins": plugins})

    def _resolve_ckpt_path(self) -> None:
        cfg = self.config_init[self.subcommand]
        cfg.ckpt_path = resume.resolve(cfg.get("ckpt_path"), self.trainer, self.model, self.subcommand == "fit")

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path

    def _set_seed(self) -> None:
        seed = self._subconfig().get("seed_everything")
        if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed < 2**32:
            raise UsageError(f"--seed_everything {seed}: give a whole number from 0 to {2**32 - 1} (what NumPy "
                             "accepts), or true for a random one")
        super()._set_seed()

    def after_fit(self) -> None:
        """Says where the result is and how to try it."""
        best = next((cb for cb in self.trainer.checkpoint_callbacks
                     if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path), None)
        last = next((cb.last_model_path for cb in self.trainer.checkpoint_callbacks
                     if isinstance(cb, ModelCheckpoint) and cb.last_model_path), None)
        path = best.best_model_path if best else last
        if not path or not self.trainer.is_global_zero:
            return
        score = ""
        if best and best.best_model_score is not None:
            score = f" ({best.monitor} {float(best.best_model_score):.4f})"
        print(f"\nBest checkpoint: {path}{score}\nTry it:  python sample.py --ckpt {path} --length 500")


def cli_main(args: list[str] | None = None) -> CharRNNCLI:
    """Runs the command; a user's mistake (a bad flag or file) exits with status 2 and SIGTERM with 143, each
    with a one-line message."""
    # Lightning's progress bar redraws at least every TQDM_MINITERS steps: every 10, not every step, so
    # the loss it shows is read from the device (a wait for the GPU) once per 10 steps.
    os.environ.setdefault("TQDM_MINITERS", "10")
    try:
        return CharRNNCLI(
            CharRNN,
            CharDataModule,
            # Rerunning or resuming into the same log directory must not abort on its config.yaml.
            save_config_kwargs={"overwrite": True},
            # Each rank reads its own streams (CharDataModule); a DistributedSampler would break them.
            trainer_defaults={"use_distributed_sampler": False},
            args=args,
        )
    except (UsageError, MisconfigurationException) as e:  # ours (CheckpointError included), and the Trainer's
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except SIGTERMException:
        print("Stopped by SIGTERM. Continue with the same command and --ckpt_path last", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


def main() -> None:
    """The ``charrnn-train`` console script (same as ``python train.py``)."""
    cli_main()
