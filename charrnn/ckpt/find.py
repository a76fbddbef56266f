"""``--ckpt_path``: which checkpoint a run starts from, checked before the Trainer touches it.

``last`` means the newest ``last*.ckpt`` (or StopCheckpoint file) in the run's checkpoint
directories, as in Lightning, with three differences: with none there it is an error, not a fresh
start; a damaged or unsafe newest file is skipped, with a warning, for the newest good one; and a
checkpoint of another model (vocabulary or architecture) is refused instead of half-loaded.

Model settings that differ from the checkpoint's are never dropped without a word (see ``compare``):
the architecture must match; what the resumed optimizer and schedule state decide (learning rate,
schedule, weight decay, ...) is refused when training, as it could not take effect; what is read at
every step (``state_reset_prob``, ``cuda_graph``) takes effect, and says so; what evaluation does not
use is named as unused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.ckpt.load import CheckpointError, read_checkpoint
from charrnn.ckpt.write import SafeCheckpointIO
from charrnn.net_spec import ARCHITECTURE_FIELDS

# Model settings that a resumed run takes from the checkpoint's optimizer and scheduler state (or, for
# init_from, its weights): a different value could not take effect, so training refuses it.
FROM_OPTIMIZER_STATE = ("learning_rate", "weight_decay", "lr_schedule", "lr_decay_every", "lr_decay_factor",
                        "warmup_steps", "min_lr_ratio", "init_from")
# Read at every training step: a new value takes effect from the resumed step on.
PER_STEP = ("state_reset_prob", "cuda_graph")
SPECIAL = ("best", "hpc")  # Lightning's words, which a new command cannot use (refuse_special)


class ResumeError(CheckpointError):
    """No usable checkpoint for ``--ckpt_path``; the message says what to do."""


def refuse_special(ckpt_path: str | None, checkpoint: Mapping[str, Any] | None) -> None:
    """Refuses an empty ``--ckpt_path`` and Lightning's ``best`` and ``hpc``, which a new command cannot use:
    ``best`` is the best checkpoint of a fit earlier in the same process (a new command has had none),
    ``hpc`` the checkpoint SLURM's auto-requeue writes (this project does not use it). Lightning would
    fail on them with a traceback. ``checkpoint``: the checkpoint group's settings, to name the best files."""
    if ckpt_path == "":
        raise ResumeError("--ckpt_path is empty: give a checkpoint file, or last, or leave it out to start a new run")
    if ckpt_path == "hpc":
        raise ResumeError("--ckpt_path hpc names the checkpoint of SLURM's auto-requeue, which this project does not "
                          "write; give a checkpoint file, or last")
    if ckpt_path == "best":
        directory = Path(str((checkpoint or {}).get("dirpath") or "checkpoints"))
        found = sorted(str(p) for p in directory.glob("best*.ckpt")) if directory.is_dir() else []
        there = f" ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})" if found else ""
        raise ResumeError("--ckpt_path best: Lightning's `best` is the best checkpoint of a fit run earlier in the "
                          "same process, which a new command does not have; give the file itself: the "
                          f"best_checkpoints group writes best-step=N-val_loss=X.ckpt into {directory}{there}")


def checkpoint_files(trainer: L.Trainer) -> tuple[list[Path], set[Path]]:
    """All ``*.ckpt`` in the run's checkpoint directories, newest first, and the ones ``last`` prefers."""
    dirs: set[Path] = set()
    preferred: set[Path] = set()
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            dirs.add(shown(cb.dirpath))
        elif isinstance(cb, (StopCheckpoint, OnExceptionCheckpoint)) and cb.ckpt_path is not None:
            dirs.add(shown(cb.dirpath))
            preferred.add(shown(cb.ckpt_path))
    files = {p for d in dirs if d.is_dir() for p in d.glob("*.ckpt") if p.is_file()}
    preferred |= {p for p in files if p.name.startswith("last")}
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True), preferred & files


def shown(path: str | os.PathLike) -> Path:
    """``path`` relative to the working directory when it lies below it (as configs write it), else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def compare(path: Path, saved: Mapping[str, Any], ours: Mapping[str, Any], stage: str) -> None:
    """Checks this run's model settings ``ours`` against the checkpoint's hyperparameters ``saved``
    (keys present in both, the vocabulary aside): refuses a different architecture, and when
    training (``stage`` "fit") a different optimizer or schedule setting; reports the rest."""
    def differ(keys: tuple[str, ...] | None = None) -> list[str]:
        return [k for k in ours if k in saved and k != "vocab" and saved[k] != ours[k]
                and (keys is None or k in keys)]

    arch = differ(ARCHITECTURE_FIELDS)
    if arch:
        raise another_model(path, [f"{k}: {saved[k]!r} there, {ours[k]!r} here" for k in arch])
    rest = [k for k in differ() if k not in arch]
    flags = ", ".join(f"--model.{k} {ours[k]!r} (checkpoint: {saved[k]!r})" for k in rest)
    if not rest:
        return
    if stage != "fit":
        rank_zero_info(f"--ckpt_path {path}: {stage} does not train, so these are not used: {flags}")
        return
    fixed = [k for k in rest if k not in PER_STEP]
    if fixed == ["init_from"]:
        raise ResumeError(f"--ckpt_path {path}: --model.init_from {ours['init_from']!r} (checkpoint: "
                          f"{saved['init_from']!r}): a resumed run takes its weights from the checkpoint. Leave out "
                          "one of the two")
    if fixed:
        named = ", ".join(f"--model.{k} {ours[k]!r} (checkpoint: {saved[k]!r})" for k in fixed)
        raise ResumeError(f"--ckpt_path {path}: {named}: a resumed run continues the checkpoint's optimizer and "
                          "schedule, so this cannot take effect. Leave it as the checkpoint has it, or start a "
                          f"new run from these weights with --model.init_from {path}")
    rank_zero_info(f"--ckpt_path {path}: taking effect from the resumed step on: {flags}")


def check_matches(path: Path, ckpt: dict[str, Any], model: L.LightningModule, stage: str = "fit") -> None:
    """Refuses a checkpoint of another model (another vocabulary or architecture than this run's), and
    settings that contradict it (``compare``)."""
    saved, ours = ckpt["hyper_parameters"], model.hparams
    if list(saved["vocab"]) != list(ours["vocab"]):
        raise another_model(path, [f"vocabulary: {len(saved['vocab'])} tokens there, {len(ours['vocab'])} from the "
                                   "data here"] + [f"{k}: {saved[k]!r} there, {ours[k]!r} here"
                                                   for k in ARCHITECTURE_FIELDS
                                                   if k in saved and k in ours and saved[k] != ours[k]])
    compare(path, saved, ours, stage)


def another_model(path: Path, diffs: list[str]) -> ResumeError:
    return ResumeError(f"checkpoint {path} belongs to another model ({'; '.join(diffs)}). Resume with the config "
                       "and data that wrote it, or start the new run in its own ModelCheckpoint dirpath (or from "
                       "its weights with --model.init_from)")


def resolve_last(trainer: L.Trainer, fitting: bool) -> tuple[Path, dict[str, Any]]:
    files, preferred = checkpoint_files(trainer)
    if not files:
        dirs = sorted({str(shown(cb.dirpath)) for cb in trainer.callbacks
                       if isinstance(cb, ModelCheckpoint) and cb.dirpath})
        where = ", ".join(dirs) if dirs else "(no ModelCheckpoint with a dirpath is configured)"
        earlier = sorted(str(p) for d in dirs for p in Path(d).glob("earlier-*") if p.is_dir())
        aside = (f" (a new run moved earlier checkpoints into {', '.join(earlier)}: move them back to continue "
                 "that run)") if earlier else ""
        raise ResumeError(f"--ckpt_path last: there is no checkpoint to resume from in {where}{aside}. "
                          "To start a new run, leave out --ckpt_path")
    newest_preferred = [p for p in files if p in preferred][:1]
    order = newest_preferred + [p for p in files if p not in newest_preferred]
    skipped: list[str] = []
    for path in order:
        try:
            ckpt = read_checkpoint(path, resuming=fitting)
        except CheckpointError as e:
            skipped.append(str(e))
            continue
        if skipped:
            rank_zero_warn("--ckpt_path last: skipped " + "; skipped ".join(skipped)
                           + f". Falling back to the previous good checkpoint {path}")
        return newer_than_last(path, ckpt, files, preferred, fitting)
    raise ResumeError("--ckpt_path last: no usable checkpoint; " + "; ".join(skipped)
                      + ". Remove or repair them, or leave out --ckpt_path to start a new run")


def newer_than_last(path: Path, ckpt: dict[str, Any], files: list[Path], preferred: set[Path], fitting: bool,
                    ) -> tuple[Path, dict[str, Any]]:
    """``path`` (a ``last`` file), or a whole checkpoint written after it of a later step. ``last.ckpt``
    falls behind when a save of it fails (a full disk) after ``step=N.ckpt`` was written, or when a run
    ends between a save of the best checkpoints and its next ``last.ckpt``; the StopCheckpoint file
    falls behind when a run that resumed from it ended without a stop (killed, or crashed)."""
    if path not in preferred:
        return path, ckpt
    written = path.stat().st_mtime
    for other in files:  # newest first
        if other.stat().st_mtime <= written:
            break
        if other in preferred:
            continue
        try:
            newer = read_checkpoint(other, resuming=fitting)
        except CheckpointError:
            continue
        if newer.get("global_step", -1) > ckpt.get("global_step", -1):
            why = ("left by an earlier stop, before the run that wrote the newer one"
                   if not path.name.startswith("last") else
                   f"a run ended before it wrote {path.name} again, or that save failed")
            rank_zero_warn(f"--ckpt_path last: {path} (step {ckpt.get('global_step')}) is older than {other} "
                           f"(step {newer.get('global_step')}): {why}. Resuming from {other}")
            return other, newer
    return path, ckpt


def resolve(ckpt_path: str | None, trainer: L.Trainer, model: L.LightningModule, stage: str,
            loaded: dict[str, Any] | None = None) -> str | None:
    """The checkpoint file the run starts from, checked to load safely and to fit ``model``.

    ``loaded``: the explicit ``ckpt_path`` file, already read. What is read here is handed to the
    Trainer's SafeCheckpointIO, so that the file is read once.
    """
    fitting = stage == "fit"
    if not ckpt_path or ckpt_path in SPECIAL:
        return ckpt_path
    if ckpt_path == "last":
        path, ckpt = resolve_last(trainer, fitting)
    elif loaded is not None:
        path, ckpt = Path(ckpt_path), loaded
    else:
        path = Path(ckpt_path)
        try:
            ckpt = read_checkpoint(path, resuming=fitting)
        except CheckpointError as e:
            raise CheckpointError(f"--ckpt_path {e}") from None
    check_matches(path, ckpt, model, stage)
    if isinstance(io := trainer.strategy.checkpoint_io, SafeCheckpointIO):
        io.hand_over(path, ckpt)
    rank_zero_info(f"{'Resuming' if fitting else 'Loading'} from {path} (global step {ckpt.get('global_step', '?')})")
    return str(path)
