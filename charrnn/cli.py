"""The LightningCLI behind ``python train.py fit|validate|test|predict``."""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import Namespace
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from charrnn import callbacks, finetune, hints, precision, predictions
from charrnn.atomic import NoSpaceError
from charrnn.callbacks.run_directory import RunDirectory
from charrnn.callbacks.stop_checkpoint import stop_at_once_until_the_trainer_listens
from charrnn.ckpt import find
from charrnn.ckpt.load import CheckpointError, read_checkpoint
from charrnn.ckpt.write import SafeCheckpointIO
from charrnn.config_file import check_config_args
from charrnn.data import CharDataModule
from charrnn.errors import UsageError
from charrnn.flag_ranges import Seed
from charrnn.lightning_private import (
    CLIWithOwnCheckpointSettings,
    build_trainer,
    hide_false_alarms,
    version_left_to_lightning,
)
from charrnn.model import CharRNN
from charrnn.train_flags import check_trainer_flags

# The always-present callbacks, each a group of flags and a YAML section of its own.
GROUPS: dict[str, tuple[type[Callback], dict[str, Any]]] = {
    # step=N.ckpt every N steps, and last.ckpt; StopCheckpoint's interrupted.ckpt goes there too
    "checkpoint": (callbacks.UpToDateCheckpoint, {"dirpath": "checkpoints", "filename": "step={step}",
                                                  "every_n_train_steps": 500, "save_top_k": -1, "save_last": True,
                                                  "auto_insert_metric_name": False}),
    # the best by validation loss, in the same directory (the same class: its one addition needs save_last)
    "best_checkpoints": (callbacks.UpToDateCheckpoint, {"filename": "best-step={step}-val_loss={val/loss:.4f}",
                                                        "monitor": "val/loss", "save_top_k": 3,
                                                        "auto_insert_metric_name": False}),
    "samples": (callbacks.TextSamples, {}),
    "divergence": (callbacks.DivergenceStop, {}),  # a loss gone non-finite or exploded stops the run, unsaved
}


class OneLineErrorParser(LightningArgumentParser):
    """The parser, whose refusal of a value (jsonargparse says it over several lines) is one line naming the
    flag: ``error: --data.batch_size: Not of type PositiveInt: 0 does not conform to restriction v>0``."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        super().error(one_line(message), ex)


def one_line(message: str) -> str:
    """jsonargparse's ``Parser key "data.batch_size":`` and the lines below it as ``--data.batch_size: ...``."""
    key = re.match(r'Parser key "([^"]+)":\s*', message)
    if key:
        message = f"--{key[1]}: {message[key.end():]}"
    lines = (line.strip().removeprefix("- ") for line in message.splitlines())
    left_out = ("Subtypes:", "Errors:", "Given value type:")  # a union's lists, which name Python's classes
    return "; ".join(line for line in lines if line and not line.startswith(left_out))


class CharRNNCLI(CLIWithOwnCheckpointSettings):
    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Lightning's ``--seed_everything``, with NumPy's range of seeds shown and checked."""
        parser.add_argument("--seed_everything", type=bool | Seed, default=self.seed_everything_default,
                            help="A whole number to seed every random generator with before the classes are made, "
                                 "or true for a random one.")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The vocabulary comes from the data, never from the config.
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        for key, (cls, defaults) in GROUPS.items():
            parser.add_lightning_class_args(cls, key)
            parser.set_defaults({f"{key}.{k}": v for k, v in defaults.items()})
        parser.link_arguments("checkpoint.dirpath", "best_checkpoints.dirpath", apply_on="instantiate")

    def _subconfig(self, config: Any = None) -> Any:
        """The parsed (or, given ``self.config_init``, instantiated) settings of the running subcommand."""
        config = self.config if config is None else config
        return config[self.config.subcommand] if self.config.get("subcommand") else config

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        # Check an explicit --ckpt_path before anything reads it; `last` is resolved once the
        # Trainer knows its checkpoint directories (before_fit, ...).
        self._ckpt: dict[str, Any] | None = None
        path = self._subconfig().get("ckpt_path")
        find.refuse_special(path, self._subconfig().get("checkpoint"))
        check_trainer_flags(self._subconfig().get("trainer"), self._subconfig().get("model"))
        if path and path != "last":
            try:
                self._ckpt = read_checkpoint(path, resuming=self.config.get("subcommand") == "fit")
            except CheckpointError as e:
                raise CheckpointError(f"--ckpt_path {e}") from None
            # The model settings that the configs and flags give (defaults left out).
            given = parser.parse_args(args, defaults=False) if not isinstance(args, (dict, Namespace)) else args
            given = given.get(given.subcommand) if given.get("subcommand") else given
            self._given_model = set((given.get("model") or Namespace()).keys())

    def apply_checkpoint_settings(self) -> None:
        """``--ckpt_path FILE``: Lightning's CLI would replace every model setting with the checkpoint's,
        dropping the flags without a word. Here the checkpoint fills in only what no config or flag
        gives, and what they give is checked against it (``find.compare``)."""
        if self._ckpt is None:
            return
        cfg = self._subconfig()
        saved = {k: v for k, v in self._ckpt.get("hyper_parameters", {}).items() if k in cfg.model and k != "vocab"}
        ours = {k: cfg.model[k] for k in saved if k in self._given_model}
        find.compare(Path(cfg.ckpt_path), saved, ours, self.config.subcommand)
        for k, v in saved.items():
            if k not in self._given_model:
                cfg.model[k] = v

    def before_instantiate_classes(self) -> None:
        cfg = self._subconfig()
        finetune.take_architecture(cfg.model, cfg.data)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Saves through SafeCheckpointIO unless the config names another CheckpointIO plugin; RunDirectory
        goes first among the callbacks."""
        plugins = self._subconfig(self.config_init).get("trainer", {}).get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO())
        config = {**self._subconfig(self.config_init).get("trainer", {}), **kwargs, "plugins": plugins}
        config["precision"] = precision.for_run(config, self.model, self.datamodule.batch_size,
                                                self.datamodule.seq_length, fitting=self.subcommand == "fit")
        trainer = build_trainer(self, config, self._group_callbacks(config))
        run_directory = RunDirectory()
        trainer.callbacks.insert(0, run_directory)
        run_directory.claim = [lg for lg in trainer.loggers if version_left_to_lightning(lg)]
        return trainer

    def _group_callbacks(self, trainer_config: dict[str, Any]) -> list[Callback]:
        """The callbacks of the groups, and a StopCheckpoint in the checkpoint directory (unless the config
        lists its own StopCheckpoint)."""
        listed = trainer_config.get("callbacks") or []
        listed = listed if isinstance(listed, list) else [listed]
        refuse_listed_group_callbacks(listed)
        out = []
        for key, (cls, _) in GROUPS.items():
            if issubclass(cls, ModelCheckpoint) and trainer_config.get("enable_checkpointing") is False:
                continue
            out.append(self._subconfig(self.config_init).get(key))
        checkpoint = self._subconfig(self.config_init).get("checkpoint")
        if checkpoint in out and not any(isinstance(cb, callbacks.StopCheckpoint) for cb in listed):
            out.append(callbacks.StopCheckpoint(checkpoint.dirpath))
        return out

    def _resolve_ckpt_path(self) -> None:
        cfg = self.config_init[self.subcommand]
        cfg.ckpt_path = find.resolve(cfg.get("ckpt_path"), self.trainer, self.model, self.subcommand, self._ckpt)
        self._ckpt = None  # handed over to the Trainer (or not needed): not kept in memory
        for cb in self.trainer.callbacks:
            if isinstance(cb, RunDirectory):
                cb.start(self.trainer, self.model, self.subcommand, cfg.ckpt_path)

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path

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
        print(f"\nBest checkpoint: {path}{score}\nTry it:  {hints.sample_command(path)}")


    def after_predict(self) -> None:
        """Prints the losses and writes them all to ``predictions.csv`` in the run's log directory."""
        if not self.trainer.is_global_zero:
            return
        batches = self.trainer.predict_loop.predictions
        path = find.shown(Path(self.trainer.log_dir or ".") / "predictions.csv")
        if batches:
            predictions.write_csv(batches, path)
        print(predictions.summary(batches, path))


def refuse_listed_group_callbacks(listed: list[Callback]) -> None:
    """A callback that a group provides is set in the group's section only. A config that also lists one in
    ``trainer.callbacks`` (as configs did before the groups; Lightning's own ModelCheckpoint included) would
    train with two that disagree, so it is refused, naming where its settings go.

    Raises:
        UsageError: naming the listed class and the sections and flags that replace it.
    """
    for cb in listed:
        keys = [key for key, (cls, _) in GROUPS.items()
                if isinstance(cb, ModelCheckpoint if issubclass(cls, ModelCheckpoint) else cls)]
        if keys:
            sections = " or ".join(f"{key}:" for key in keys)
            flags = ", ".join(f"--{key}.*" for key in keys)
            raise UsageError(f"trainer.callbacks lists a {type(cb).__name__}: its settings belong in the config's "
                             f"{sections} section ({flags}); move them there and remove it from trainer.callbacks")


# What only a write meets, and the user can mend: a full disk or quota, a read-only filesystem.
CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def cannot_write(e: OSError) -> str:
    """One line for a log or checkpoint file that could not be written, naming it and what to do."""
    what = f"cannot write {find.shown(e.filename)}" if e.filename else "cannot write the run's logs or checkpoints"
    mend = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "remount it read-write"
    return (f"{what} ({e.strerror or e}): {mend}, or give the run another directory (--trainer.default_root_dir "
            "or the logger's save_dir for the logs, --checkpoint.dirpath for the checkpoints)")


def quiet_cannot_write(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """``threading.excepthook`` that prints nothing for a write the disk refused in a thread (TensorBoard's
    writer): the logger raises the same error in the main thread, which says it in one line."""
    def quiet(args: Any) -> object:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in CANNOT_WRITE:
            return None
        return hook(args)
    return quiet


def cli_main(args: list[str] | None = None) -> CharRNNCLI:
    """Runs the command; a user's mistake (a bad flag or file) exits with status 2 and SIGTERM with 143, each
    with a one-line message."""
    # Lightning's progress bar redraws at least every TQDM_MINITERS steps: every 10, not every step, so
    # the loss it shows is read from the device (a wait for the GPU) once per 10 steps.
    os.environ.setdefault("TQDM_MINITERS", "10")
    hide_false_alarms()
    threading.excepthook, thread_hook = quiet_cannot_write(threading.excepthook), threading.excepthook
    try:
        check_config_args(sys.argv[1:] if args is None else args, ("model", "data", "trainer", *GROUPS))
        with stop_at_once_until_the_trainer_listens():
            return CharRNNCLI(
                CharRNN,
                CharDataModule,
                # Rerunning or resuming into the same log directory must not abort on its config.yaml.
                save_config_kwargs={"overwrite": True},
                # Each rank reads its own streams (CharDataModule); a DistributedSampler would break them.
                trainer_defaults={"use_distributed_sampler": False},
                parser_class=OneLineErrorParser,
                args=args,
            )
    except (UsageError, MisconfigurationException) as e:  # ours (CheckpointError included), and the Trainer's
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except NoSpaceError as e:
        print(f"error: {e}; nothing partial was left. Free some space and run the command again "
              "(training continues from its newest whole checkpoint with --ckpt_path last)", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if e.errno not in CANNOT_WRITE:
            raise
        print(f"error: {cannot_write(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SIGTERMException:
        print("Stopped by SIGTERM. Continue with the same command and --ckpt_path last", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        threading.excepthook = thread_hook


def main() -> None:
    """The ``charrnn-train`` console script (same as ``python train.py``)."""
    cli_main()
