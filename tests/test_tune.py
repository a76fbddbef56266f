"""python -m charrnn.tune: the search space, the trial runner (events read back, the pruner fed, a child
stopped), failures recorded, a search stopped and started again, and its overlay taken by train.py fit."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from charrnn.errors import UsageError
from charrnn.tune import budget, trial
from charrnn.tune.space import load_space, nest
from tests.support.paths import ROOT
from tests.support.processes import run, run_ok
from tests.support.texts import TINY_TEXT
from tests.support.tune import SPACE


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path


def tune_args(*more: str) -> list[str]:
    return ["-m", "charrnn.tune", "--config", str(ROOT / "configs" / "debug.yaml"), "--space", "space.yaml",
            "--train_budget", "1s", "--search_budget", "1h", "--study", "t", "--out", "out",
            "--data.input_txt", "tiny.txt", "--data.url", "null", "--trainer.limit_val_batches", "2", *more]


def load(work: Path, name: str = "t") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'out' / 'study.db'}")


# ---- the search space ------------------------------------------------------------------------------------
def test_a_space_file_fixes_drops_and_redraws_flags(tmp_path):
    (tmp_path / "s.yaml").write_text("space:\n  model.rnn_size: {choices: [64]}\n  model.dropout: 0.25\n"
                                     "  model.weight_decay: null\n  data.seq_length: {low: 16, high: 64, step: 16}\n"
                                     "reports: 5\n")
    space = load_space([str(tmp_path / "s.yaml")])
    assert space.fixed == {"model.dropout": 0.25} and "model.weight_decay" not in space.params
    assert space.params["model.rnn_size"] == optuna.distributions.CategoricalDistribution([64])
    assert space.params["data.seq_length"] == optuna.distributions.IntDistribution(16, 64, step=16)
    assert isinstance(space.params["model.learning_rate"], optuna.distributions.FloatDistribution)  # the default's
    assert space.reports == 5 and space.pruner == {"min_resource": 2, "reduction_factor": 3}
    assert space.fits({"model.rnn_size": 64, "data.seq_length": 40, "model.num_layers": 2}) == {
        "model.rnn_size": 64, "model.num_layers": 2}  # 40 is off the grid
    assert nest({"model.rnn_size": 64, "trainer.max_steps": 8}) == {"model": {"rnn_size": 64},
                                                                    "trainer": {"max_steps": 8}}


def test_the_share_of_the_budget_is_searched_in_whole_parts_and_the_config_starts_twice(tmp_path):
    space = load_space()  # the default: 8 parts, a share from 0.25 to 1
    assert space.share == optuna.distributions.FloatDistribution(0.25, 1.0) and space.reports == 8
    parts = {share: space.suggest_parts(optuna.trial.FixedTrial({**{k: d.low if hasattr(d, "low") else d.choices[0]
                                                                    for k, d in space.params.items()},
                                                                 "train_share": share}))
             for share in (0.25, 0.3, 0.5, 0.99, 1.0)}
    assert parts == {0.25: 2, 0.3: 2, 0.5: 4, 0.99: 8, 1.0: 8}
    own = {"model.rnn_size": 256, "model.model_type": "gru", "data.batch_size": 100}  # 100: not a choice
    assert space.starts(own) == [{"model.rnn_size": 256, "model.model_type": "gru", "train_share": 1.0},
                                 {"model.rnn_size": 256, "model.model_type": "gru", "train_share": 0.5}]
    (tmp_path / "s.yaml").write_text("train_share: {low: 0.75, high: 1}\nreports: 4\n")
    assert load_space([str(tmp_path / "s.yaml")]).starts({"model.rnn_size": 256}) == [
        {"model.rnn_size": 256, "train_share": 1.0}]  # half the budget is outside the range
    (tmp_path / "s.yaml").write_text("train_share: 0.5\nreports: 4\n")
    fixed = load_space([str(tmp_path / "s.yaml")])
    assert fixed.share == 0.5 and fixed.starts({"model.rnn_size": 256}) == [{"model.rnn_size": 256}]
    assert fixed.suggest_parts(optuna.trial.FixedTrial({})) == 2


@pytest.mark.parametrize("text, words", [
    ("space:\n  model.dropout: {low: 0.5, high: 0.1}\n", "model.dropout: low 0.5 is above high 0.1"),
    ("space:\n  model.learning_rate: {low: 0, high: 1, log: true}\n", "model.learning_rate: a log scale"),
    ("space:\n  rnn_size: {choices: [1]}\n", "rnn_size: give a train.py flag"),
    ("space:\n  model.rnn_size: {choices: []}\n", "choices must be a non-empty list"),
    ("reports: 0\n", "reports 0"),
    ("spaces: {}\n", "give a mapping with the keys"),
    ("train_share: 1.5\n", "train_share 1.5: give a share of the training budget in"),
    ("train_share: {low: 0, high: 1}\n", "train_share .*: give a share of the training budget in"),
])
def test_a_wrong_space_file_is_one_line_naming_what_is_wrong(tmp_path, text, words):
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(UsageError, match=words):
        load_space([str(tmp_path / "s.yaml")])


def test_steps_are_a_multiple_of_the_validations_and_scale_with_the_budget():
    assert budget.steps_for(60, 0.1, 8) == 600 and budget.steps_for(61, 0.1, 8) == 608
    assert budget.steps_for(1, 10.0, 8) == 8  # never fewer than one step per validation
    fast = budget.step_seconds({"model.model_type": "gru", "model.wordvec_size": 8, "model.rnn_size": 8,
                                "model.num_layers": 1, "model.dropout": 0.0, "data.batch_size": 2,
                                "data.seq_length": 4}, 10, seconds=0.2, rounds=2, steps=2)
    slow = budget.step_seconds({"model.model_type": "lstm", "model.wordvec_size": 64, "model.rnn_size": 256,
                                "model.num_layers": 2, "model.dropout": 0.0, "data.batch_size": 64,
                                "data.seq_length": 64}, 10, seconds=0.2, rounds=2, steps=2)
    assert 0 < fast < slow


# ---- the trial runner, on events written by hand beside a child that only sleeps ------------------------
def _events(root: Path, values: list[float]) -> None:
    w = SummaryWriter(str(root / "lightning_logs" / "version_0"))
    for k, v in enumerate(values, start=1):
        w.add_scalar("val/loss", v, 10 * k)
    w.close()


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_each_validation_reaches_the_pruner_which_can_stop_the_child(tmp_path):
    _events(tmp_path, [3.0, 2.5, 2.4])
    seen = []
    start = time.monotonic()
    with pytest.raises(trial.Stopped, match="after validation 2"):
        trial.run(SLEEPER, tmp_path, lambda k, v: seen.append((k, v)) or k == 2, 60, out := trial.Outcome())
    assert seen == [(1, 3.0), (2, 2.5)] and [v for _, _, v in out.val] == [3.0, 2.5]
    assert time.monotonic() - start < 30  # the sleeping child was ended, not waited for


def test_a_diverged_loss_fails_the_trial_with_its_reason(tmp_path):
    _events(tmp_path, [3.0, math.nan])
    with pytest.raises(trial.TrialFailed, match="diverged: val/loss nan at step 20"):
        trial.run(SLEEPER, tmp_path, lambda k, v: False, 60, trial.Outcome())


def test_a_trial_running_over_its_time_is_stopped(tmp_path):
    with pytest.raises(trial.TrialFailed, match="still training after 2 s"):
        trial.run(SLEEPER, tmp_path, lambda k, v: False, 2, trial.Outcome())


@pytest.mark.parametrize("code, log, reason", [
    (-9, "", "killed by SIGKILL (out of memory?"),
    (2, "Seed set\nerror: --model.dropout 1.5: give a fraction\n", "error: --model.dropout 1.5: give a fraction"),
    (1, "Traceback (most recent call last):\n  x\nRuntimeError: CUDA out of memory. Tried\n", "RuntimeError: CUDA out"),
    (1, "Traceback:\nValueError: bad\n", "ValueError: bad"),
    (3, "", "exit status 3"),
])
def test_a_failed_fit_is_told_in_one_line(code, log, reason):
    assert trial.failure_reason(code, log).startswith(reason)


# ---- the command -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--train_budget", "5m", "--search_budget", "1m"], "--search_budget 1m00s is shorter than --train_budget"),
    (["--train_budget", "5x"], "argument --train_budget: '5x': give a duration"),
    (["--space", "missing.yaml"], "--space missing.yaml does not exist"),
    (["--trials", "0"], "--trials 0: give a whole number"),
    (["--model.no_such_flag", "7"], "train.py fit refuses the configs and flags:"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage postgresql://nobody@127.0.0.1:1/none: "
                                                            "cannot open it"),
])
def test_a_wrong_command_is_one_line_and_status_2(work, args, words):
    proc = run(tune_args(*args), work)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr[-2000:]


def test_a_study_is_not_continued_with_another_training_budget(work):
    (work / "out").mkdir()
    optuna.create_study(study_name="t", storage=f"sqlite:///{work / 'out' / 'study.db'}").set_user_attr(
        "train_budget_s", 300.0)
    proc = run(tune_args(), work)
    assert proc.returncode == 2 and "--study t was searched for a training budget of 5m00s; give another --study " \
        "for --train_budget 0m01s" in proc.stderr, proc.stderr[-2000:]


def test_without_optuna_the_command_says_what_to_install(tmp_path):
    (tmp_path / "optuna.py").write_text("raise ImportError('no', name='optuna')\n")  # shadows the real one
    proc = subprocess.run([sys.executable, "-m", "charrnn.tune", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and 'pip install -e ".[tune]"' in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_failing_trial_is_recorded_with_its_reason_and_the_search_goes_on(work):
    (work / "out").mkdir()
    study = optuna.create_study(study_name="t", storage=f"sqlite:///{work / 'out' / 'study.db'}")
    study.set_user_attr("train_budget_s", 1.0)
    wider = SPACE.replace("\ntrain_share:", "\n  trainer.accumulate_grad_batches: {low: 0, high: 1}\ntrain_share:")
    (work / "space.yaml").write_text(wider)
    study.enqueue_trial({"trainer.accumulate_grad_batches": 0})  # refused by train.py fit
    study.enqueue_trial({"trainer.accumulate_grad_batches": 1})
    proc = run_ok(tune_args("--trials", "2"), work, timeout=600)
    trials = load(work).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[0].user_attrs["fail_reason"].startswith("error: --trainer.accumulate_grad_batches 0")
    assert "FAILED" in proc.stdout and "error: --trainer.accumulate_grad_batches 0" in proc.stdout
    report = json.loads((work / "out" / "report.json").read_text())
    assert [r["state"] for r in report["trials"]] == ["FAIL", "COMPLETE"] and report["best"] == 1


@pytest.mark.slow
def test_a_stopped_search_goes_on_from_its_finished_trials_and_its_overlay_trains(work):
    """SIGTERM in the middle of trial 1: trial 0 is kept, trial 1 is failed as interrupted and queued again;
    the same command then runs it (as trial 2) and one more; tuned.yaml is taken by train.py fit. No rung of
    the pruner is reached, so which trials complete does not depend on the losses (nor on the machine's load)."""
    (work / "space.yaml").write_text(SPACE.replace("min_resource: 1,", "min_resource: 1000,"))
    cmd = [sys.executable, *tune_args("--trials", "3")]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while not (work / "out" / "trials" / "trial-0001" / "fit.log").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "trial 1 never started"
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Run the same command to go on" in err, err[-3000:]
    first = load(work).trials
    assert [t.state.name for t in first] == ["COMPLETE", "FAIL", "WAITING"]
    assert first[0].user_attrs["baseline"] and len(first[0].intermediate_values) == 4  # the pruner was fed
    assert first[1].user_attrs["fail_reason"].startswith("interrupted")
    assert first[2].params == first[1].params

    again = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 trials finished" not in again.stdout and "2 trials finished" in again.stdout
    trials = load(work).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert trials[2].params == first[1].params and trials[0].datetime_complete == first[0].datetime_complete
    assert all(t.state.is_finished() for t in trials)
    for t in trials:  # every finished or pruned trial reported each validation it reached
        if t.state.name in ("COMPLETE", "PRUNED"):
            assert t.intermediate_values and len(t.user_attrs["val_curve"]) == len(t.intermediate_values)

    tuned = yaml.safe_load((work / "out" / "tuned.yaml").read_text())
    assert tuned["trainer"]["max_steps"] % 4 == 0 and tuned["trainer"]["val_check_interval"] * 4 == \
        tuned["trainer"]["max_steps"]
    best = min((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert tuned["model"]["learning_rate"] == best.params["model.learning_rate"]
    run_ok([str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "debug.yaml"), "--config",
            "out/tuned.yaml", "--data.input_txt", "tiny.txt", "--data.url", "null",
            "--trainer.limit_val_batches", "2"], work)
    last = torch.load(work / "checkpoints" / "debug" / "last.ckpt", weights_only=True)
    assert last["global_step"] == tuned["trainer"]["max_steps"]
    assert last["hyper_parameters"]["rnn_size"] == best.params["model.rnn_size"]
    report = (work / "out" / "report.md").read_text()
    assert "the config's own settings" in report and "interrupted" in report


@pytest.mark.slow
def test_a_searched_share_starts_with_the_config_for_the_whole_budget_then_half_of_it(work):
    """Both trials validate after the same steps (the budget's parts); the second stops halfway, its schedule
    ending there, and the report says how much of the budget each trained."""
    searched = SPACE.replace("train_share: 1.0", "train_share: {low: 0.5, high: 1.0}")
    (work / "space.yaml").write_text(searched.replace("min_resource: 1,", "min_resource: 1000,"))
    proc = run_ok(tune_args("--trials", "2"), work, timeout=600)
    whole, half = load(work).trials
    assert whole.params == {**half.params, "train_share": 1.0} and half.params["train_share"] == 0.5
    # The budget's part in steps, from the fastest timing of the shape so far (each trial times it again).
    every = half.user_attrs["val_check_interval"]
    assert every >= whole.user_attrs["val_check_interval"] and whole.user_attrs["max_steps"] == \
        4 * whole.user_attrs["val_check_interval"] and half.user_attrs["max_steps"] == 2 * every
    assert [s for s, _, _ in half.user_attrs["val_curve"]] == [every - 1, 2 * every - 1]  # TensorBoard's step
    assert len(whole.intermediate_values) == 4 and len(half.intermediate_values) == 2
    assert f"{2 * every} steps (50% of the budget)" in proc.stdout
    assert "the config's own settings" in (work / "out" / "report.md").read_text().split("| 1 |")[1]


def test_a_trial_whose_worker_died_is_failed_and_queued_again_after_the_grace_period(tmp_path, monkeypatch):
    """kill -9 of a worker: its trial stays RUNNING until the next worker finds its heartbeat stale."""
    from charrnn.tune import study as study_module

    monkeypatch.setattr(study_module, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_module, "GRACE_S", 1)
    storage = study_module.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study, created = study_module.open_study("s", storage, load_space([]), seed=0)
    assert created and not study_module.open_study("s", storage, load_space([]), seed=0)[1]
    dead = study.ask({"model.rnn_size": optuna.distributions.CategoricalDistribution([128, 256])})
    storage.record_heartbeat(dead._trial_id)  # its last heartbeat; then the worker is gone
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)  # what the next worker's optimize does first
    trials = study.trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].params == trials[0].params and trials[1].system_attrs["failed_trial"] == 0
