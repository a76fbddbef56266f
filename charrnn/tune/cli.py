"""``python -m charrnn.tune``: the best settings this machine can train on a corpus in a training budget,
searched with Optuna within a search budget, written as a config overlay (``tuned.yaml``) and a report."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from charrnn.corpus import Corpus
from charrnn.data import vocab_of
from charrnn.errors import UsageError
from charrnn.net_spec import Architecture, parameter_count
from charrnn.train_flags import check_model_flags
from charrnn.tune import budget, report, trial
from charrnn.tune.space import Space, load_space
from charrnn.tune.study import open_storage, open_study, requeue, spent_s, storage_url, worker_name

CORPUS_ARGS = ("input_txt", "url", "input_h5", "input_json", "val_frac", "test_frac", "encoding", "vocab_from",
               "unknown")
INTERRUPTED = "interrupted (Ctrl-C or kill); queued again"
# A trial running longer than this many training budgets, plus OVERRUN_S for its start, is stopped (and failed).
OVERRUN, OVERRUN_S = 4, 300


def duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1.5h`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration like 90s, 5m or 1.5h")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m charrnn.tune", description=__doc__.split("\n\n")[0],
        epilog="Every other --flag goes to each trial's train.py fit as it is (e.g. --data.input_txt x.txt). "
               "Run the same command again to go on with a stopped search. More: docs/tuning.md")
    p.add_argument("--config", action="append", required=True, help="train.py fit's config(s), in order")
    p.add_argument("--train_budget", type=duration, default=duration("5m"),
                   help="how long the final model may train (default 5m): each trial trains the steps this allows")
    p.add_argument("--search_budget", type=duration, default=duration("30m"),
                   help="how long this worker searches (default 30m); time already spent in the study counts")
    p.add_argument("--trials", type=int, help="stop this worker after this many more trials, even with time left")
    p.add_argument("--space", action="append", default=[], help="YAML laid over charrnn/tune/space.yaml")
    p.add_argument("--study", help="the study's name (default: the last config's name and the training budget)")
    p.add_argument("--out", type=Path, help="where trials, the report and tuned.yaml go (default: tune/STUDY)")
    p.add_argument("--storage", help="a database URL that several workers share (postgresql://user@host/db); "
                                     "default: the SQLite file OUT/study.db")
    p.add_argument("--worker", help="this worker's name, distinct per worker (default: the host name)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0), mixed with the worker's name")
    return p


def resolved_config(configs: list[str], extra: list[str]) -> dict[str, Any]:
    """train.py fit's own view of the configs and flags (``--print_config``), as flag -> value."""
    cmd = [sys.executable, "-c", trial.FIT, "fit", *[a for c in configs for a in ("--config", c)], *extra,
           "--print_config"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        why = trial.failure_reason(done.returncode, done.stderr).removeprefix("error: ")
        raise UsageError(f"train.py fit refuses the configs and flags: {why}")
    cfg = yaml.safe_load(done.stdout)
    return {f"{part}.{k}": v for part in ("model", "data", "trainer") for k, v in (cfg.get(part) or {}).items()}


class Search:
    """One worker's search: trials until its search budget is spent."""

    def __init__(self, args: argparse.Namespace, extra: list[str], space: Space, base: dict[str, Any],
                 vocab_size: int, study: optuna.Study, out: Path, worker: str, command: str) -> None:
        self.args, self.extra, self.space, self.base = args, extra, space, base
        self.vocab_size, self.study, self.out, self.worker, self.command = vocab_size, study, out, worker, command
        self.running: int | None = None

    def objective(self, t: optuna.Trial) -> float:
        self.running = t.number
        try:
            return self._objective(t)
        except KeyboardInterrupt:
            t.set_user_attr("fail_reason", INTERRUPTED)
            raise

    def _objective(self, t: optuna.Trial) -> float:
        t.set_user_attr("worker", self.worker)
        flags = self.space.suggest(t)
        try:
            steps = self._prepare(t, flags)
        except trial.TrialFailed as e:
            t.set_user_attr("fail_reason", str(e))
            raise
        root = self.out / "trials" / f"trial-{t.number:04d}"
        shutil.rmtree(root, ignore_errors=True)  # left by a study of the same name that was deleted
        cmd = trial.fit_command(self.args.config, self.extra, flags, steps, t.user_attrs["val_check_interval"], root)
        outcome = trial.Outcome()

        def on_validation(k: int, loss: float) -> bool:
            t.report(loss, k)
            return t.should_prune()

        try:
            trial.run(cmd, root, on_validation, OVERRUN * self.args.train_budget + OVERRUN_S, outcome)
        except trial.Stopped as e:
            raise optuna.TrialPruned(str(e)) from None
        except trial.TrialFailed as e:
            t.set_user_attr("fail_reason", str(e))
            raise
        finally:
            t.set_user_attr("val_curve", [list(p) for p in outcome.val])  # (step, seconds, loss)
            t.set_user_attr("chars_per_sec", outcome.chars_per_sec)
        return min(v for _, _, v in outcome.val)

    def _prepare(self, t: optuna.Trial, flags: dict[str, Any]) -> int:
        """Checks the trial's network as train.py would, times its step and records what it will train: its
        number of steps (its share of those the budget allows) and the steps between two validations (the
        budget's part, the same for every trial of this shape)."""
        config = {**self.base, **flags}
        hp = {k.removeprefix("model."): v for k, v in config.items() if k.startswith("model.")}
        try:
            check_model_flags(hp, self.vocab_size)
            config["trainer.precision"] = budget.precision_of(config, self.vocab_size)
            step_s = self._step_seconds(config)
        except UsageError as e:
            raise trial.TrialFailed(f"error: {e}") from None
        except (ValueError, RuntimeError) as e:  # a network torch refuses, or memory for its step
            raise trial.TrialFailed(f"its step cannot be timed: {type(e).__name__}: {e}") from None
        interval = budget.steps_for(self.args.train_budget, step_s, self.space.reports) // self.space.reports
        parts = self.space.suggest_parts(t)
        steps = parts * interval
        for k, v in {"flags": flags, "max_steps": steps, "val_check_interval": interval,
                     "train_share": parts / self.space.reports, "seconds_per_step": step_s,
                     "precision": config["trainer.precision"],
                     "parameters": parameter_count(Architecture.from_fields(hp, self.vocab_size))}.items():
            t.set_user_attr(k, v)
        return steps

    def _step_seconds(self, config: dict[str, Any]) -> float:
        """The step time of ``config``'s shape on this worker: timed now, and the fastest of this and its earlier
        timings (kept in the study), so that one timed in a burst of load is not stuck with it."""
        key = f"step_s {self.worker} {budget.shape_key(config)}"
        now = budget.step_seconds(config, self.vocab_size)
        known = self.study.user_attrs.get(key)
        best = now if known is None else min(float(known), now)
        self.study.set_user_attr(key, best)
        return best

    def left_s(self) -> float:
        return self.args.search_budget - spent_s(self.study, self.worker)

    def typical_s(self) -> float:
        """How long a trial takes here: the median of the finished ones, or the training budget at first."""
        done = sorted(report.seconds(t) for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                      if t.user_attrs.get("worker") == self.worker)
        return done[len(done) // 2] if done else self.args.train_budget

    def run(self) -> None:
        trials = 0
        while self.left_s() >= self.typical_s() and (self.args.trials is None or trials < self.args.trials):
            trials += 1
            self.running = None
            self.study.optimize(self.objective, n_trials=1, catch=(trial.TrialFailed,))
            if self.running is not None:
                finished = next(t for t in self.study.get_trials(deepcopy=False) if t.number == self.running)
                print(report.line(finished, report.best_trial(self.study), self.left_s()), flush=True)
                report.write(self.study, self.out, self.command, self.args.train_budget)
            self.running = None


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    try:
        return _main(args, extra, argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, extra: list[str], argv: list[str] | None) -> int:
    if extra and not extra[0].startswith("--"):
        raise UsageError(f"{extra[0]}: flags only (--name value); see python -m charrnn.tune --help")
    if args.trials is not None and args.trials < 1:
        raise UsageError(f"--trials {args.trials}: give a whole number ≥1")
    if args.search_budget < args.train_budget:
        raise UsageError(f"--search_budget {report.clock(args.search_budget)} is shorter than --train_budget "
                         f"{report.clock(args.train_budget)}: give room for several trials")
    space = load_space(args.space)
    name = args.study or f"{Path(args.config[-1]).stem}-{report.clock(args.train_budget)}"
    out = args.out or Path("tune") / name
    command = "python -m charrnn.tune " + shlex.join(sys.argv[1:] if argv is None else argv)
    base = resolved_config(args.config, extra)
    vocab_size = len(Corpus(**{k: base[f"data.{k}"] for k in CORPUS_ARGS},
                            fixed_vocab=vocab_of(base["data.vocab_from"])).vocab)
    url = storage_url(args.storage, out)
    worker = worker_name(args.worker)
    # Each worker's sampler draws its own numbers: with one seed, workers would try the same settings.
    study, created = open_study(name, open_storage(url), space, (args.seed + zlib.crc32(worker.encode())) % 2**32)
    if created:
        study.set_user_attr("train_budget_s", args.train_budget)
        for n, first in enumerate(space.starts(base)):
            study.enqueue_trial(first, user_attrs={"baseline": n == 0, "own_settings": True})
    elif study.user_attrs.get("train_budget_s") != args.train_budget:
        raise UsageError(f"--study {name} was searched for a training budget of "
                         f"{report.clock(study.user_attrs.get('train_budget_s') or 0)}; give another --study "
                         f"for --train_budget {report.clock(args.train_budget)}")
    search = Search(args, extra, space, base, vocab_size, study, out, worker, command)
    done = len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()])
    print(f"Study {name} in {url.split('@')[-1]}: {done} trials finished; worker {worker} has "
          f"{report.clock(search.left_s())} of search left. Trials: {out / 'trials'} (tensorboard --logdir "
          f"{out / 'trials'})", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        search.run()
    except KeyboardInterrupt:
        if search.running is not None:
            requeue(study, search.running, INTERRUPTED)
        report.write(study, out, command, args.train_budget)
        print(f"\nStopped; {report.clock(search.left_s())} of search left. Run the same command to go on.",
              file=sys.stderr)
        return 130
    best = report.write(study, out, command, args.train_budget)
    if best is None:
        states = [t.state for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        print(f"No trial completed yet ({states.count(TrialState.FAIL)} failed, {states.count(TrialState.PRUNED)} "
              f"pruned), so no tuned.yaml; see {out / 'report.md'}", file=sys.stderr)
        return 1 if all(s == TrialState.FAIL for s in states) else 0
    print(f"\nBest: trial {best.number}, val {best.value:.4f}: {report.settings(best.user_attrs['flags'])}\n"
          f"Overlay: {out / 'tuned.yaml'}; report: {out / 'report.md'}\n"
          f"Train with it:  python train.py fit {' '.join('--config ' + c for c in args.config)} "
          f"--config {out / 'tuned.yaml'}", flush=True)
    return 0
