"""What a search shows and leaves: a line per finished trial, the tuned overlay (``tuned.yaml``) and the
report (``report.md`` for people, ``report.json`` with every trial's validation losses over time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from charrnn.atomic import atomic_write
from charrnn.tune.space import nest
from charrnn.tune.study import seconds

SHORT = {"model.model_type": "", "model.num_layers": "x", "model.rnn_size": "", "model.wordvec_size": "wv",
         "model.dropout": "drop", "model.weight_decay": "wd", "model.learning_rate": "lr", "model.lr_schedule": "",
         "model.warmup_steps": "warm", "model.min_lr_ratio": "min", "model.state_reset_prob": "reset",
         "data.batch_size": "batch", "data.seq_length": "seq"}


def clock(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def settings(flags: dict[str, Any]) -> str:
    """The trial's settings in a few words: ``gru 2x256 wv64 drop 0.1 lr 0.005 cosine batch 128x32 ...``."""
    f = dict(flags)
    words = []
    if "model.model_type" in f or "model.rnn_size" in f:
        words.append(f"{f.pop('model.model_type', '')} {f.pop('model.num_layers', '?')}x{f.pop('model.rnn_size', '?')}"
                     .strip())
    if "data.batch_size" in f and "data.seq_length" in f:
        words.append(f"batch {f.pop('data.batch_size')}x{f.pop('data.seq_length')}")
    for k, v in f.items():
        label = SHORT.get(k, k.split(".")[-1])
        words.append(f"{label}{'' if not label or label.endswith('x') else ' '}{_num(v)}".strip())
    return " ".join(words)


def value(t: FrozenTrial) -> float | None:
    """The trial's best validation loss: its objective, or the best it reported before being pruned."""
    if t.state == TrialState.COMPLETE and t.value is not None:
        return t.value
    vals = [v for v in t.intermediate_values.values() if math.isfinite(v)]
    return min(vals) if vals else None


def line(t: FrozenTrial, best: FrozenTrial | None, left_s: float) -> str:
    """One line for a finished trial, the best so far and the search time left."""
    state = {TrialState.COMPLETE: "done", TrialState.PRUNED: "pruned", TrialState.FAIL: "FAILED"}.get(t.state,
                                                                                                      t.state.name)
    v = value(t)
    what = f"val {v:.4f}" if v is not None else "val -"
    if t.state == TrialState.FAIL:
        what += f" ({t.user_attrs.get('fail_reason', '?')})"
    best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else "best -"
    return (f"trial {t.number:3d} {state:6s} {what}  {settings(t.user_attrs.get('flags', t.params))}  "
            f"{_steps(t.user_attrs)}, {clock(seconds(t))} | {best_text} | {clock(left_s)} left")


def _steps(attrs: dict[str, Any]) -> str:
    """``1552 steps (50% of the budget)``."""
    share = attrs.get("train_share")
    return f"{attrs.get('max_steps') or '?'} steps" + (f" ({share:.0%} of the budget)" if share else "")


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(done, key=lambda t: t.value) if done else None


def overlay(best: FrozenTrial, command: str, train_budget_s: float) -> str:
    """The tuned settings as a config overlay for ``train.py fit --config BASE --config tuned.yaml``."""
    flags = dict(best.user_attrs.get("flags", best.params))
    steps = int(best.user_attrs["max_steps"])
    flags |= {"trainer.max_steps": steps, "trainer.val_check_interval": int(best.user_attrs["val_check_interval"]),
              "trainer.check_val_every_n_epoch": None}
    share = float(best.user_attrs.get("train_share", 1.0))
    head = (f"# Tuned by: {command}\n"
            f"# Trial {best.number}: validation loss {best.value:.4f} after {steps} steps, {share:.0%} of the "
            f"steps a {clock(train_budget_s)} training budget allows\n"
            f"# ({best.user_attrs.get('seconds_per_step', float('nan')) * 1000:.1f} ms a step measured in "
            f"{best.user_attrs.get('precision')}). Use it after the config it was tuned on:\n"
            f"#   python train.py fit --config BASE.yaml --config tuned.yaml\n")
    return head + yaml.safe_dump(nest(flags), sort_keys=False)


def _row(t: FrozenTrial) -> dict[str, Any]:
    a = t.user_attrs
    return {"number": t.number, "state": t.state.name, "val_loss": value(t), "seconds": round(seconds(t), 1),
            "worker": a.get("worker"), "flags": a.get("flags", t.params), "parameters": a.get("parameters"),
            "max_steps": a.get("max_steps"), "val_check_interval": a.get("val_check_interval"),
            "train_share": a.get("train_share"),
            "seconds_per_step": a.get("seconds_per_step"),
            "chars_per_sec": a.get("chars_per_sec"), "baseline": bool(a.get("baseline")),
            "own_settings": bool(a.get("own_settings") or a.get("baseline")),
            "fail_reason": a.get("fail_reason") if t.state == TrialState.FAIL else None,
            "val_curve": a.get("val_curve", []), "retry_of": t.system_attrs.get("failed_trial")}


def write(study: optuna.Study, out: Path, command: str, train_budget_s: float) -> FrozenTrial | None:
    """Writes ``report.json``, ``report.md`` and (once a trial has finished) ``tuned.yaml`` into ``out``."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    rows = [_row(t) for t in trials]
    best = best_trial(study)
    atomic_write(out / "report.json", lambda f: f.write(json.dumps(
        {"study": study.study_name, "command": command, "train_budget_s": train_budget_s,
         "best": best.number if best else None, "trials": rows}, indent=1).encode()))
    lines = [f"# Search {study.study_name}", "", f"`{command}`", "",
             f"Training budget {clock(train_budget_s)}; {len(rows)} trials finished. Validation loss is the "
             "best of each trial's validations (nats per character).", "",
             "| trial | state | val loss | settings | parameters | steps (share of the budget) | ms/step | chars/s "
             "| time | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["val_loss"] is None, r["val_loss"] or 0.0)):
        note = r["fail_reason"] or ("the config's own settings" if r["own_settings"] else "")
        if best is not None and r["number"] == best.number:
            note = ("best; " + note).rstrip("; ")
        val = f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "-"
        sps = f"{r['seconds_per_step'] * 1000:.1f}" if r["seconds_per_step"] else "-"
        cps = f"{r['chars_per_sec']:,.0f}" if r["chars_per_sec"] else "-"
        steps = f"{r['max_steps'] or '-'}" + (f" ({r['train_share']:.0%})" if r["train_share"] else "")
        lines.append(f"| {r['number']} | {r['state'].lower()} | {val} | {settings(r['flags'])} | "
                     f"{r['parameters'] or '-'} | {steps} | {sps} | {cps} | "
                     f"{clock(r['seconds'])} | {note} |")
    lines += ["", "Each trial's validation losses over time (step, seconds, loss) are in report.json; its "
              "TensorBoard run is in trials/trial-NNNN/."]
    atomic_write(out / "report.md", lambda f: f.write(("\n".join(lines) + "\n").encode()))
    if best is not None:
        text = overlay(best, command, train_budget_s)
        atomic_write(out / "tuned.yaml", lambda f: f.write(text.encode()))
    return best
