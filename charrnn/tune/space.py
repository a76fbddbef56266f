"""The search space: which train.py flags a trial sets, and how Optuna draws them (``space.yaml``, with a
user's ``--space`` files laid over it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml

from charrnn.errors import UsageError

Value = str | int | float | bool
SHARE = "train_share"  # not a flag: the share of the training budget a trial trains


@dataclass(frozen=True)
class Space:
    """``params``: flag -> Optuna distribution; ``fixed``: flag -> value every trial sets; ``share``: the share
    of the training budget a trial trains, drawn or fixed; ``reports``: the parts the budget is cut into, a
    validation after each; ``pruner``: SuccessiveHalvingPruner's arguments."""

    params: dict[str, optuna.distributions.BaseDistribution]
    fixed: dict[str, Value] = field(default_factory=dict)
    share: optuna.distributions.FloatDistribution | float = 1.0
    reports: int = 8
    pruner: dict[str, int] = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Value]:
        """The flags of one trial: its drawn values, then the fixed ones."""
        drawn = {name: _suggest(trial, name, dist) for name, dist in self.params.items()}
        return {**drawn, **self.fixed}

    def suggest_parts(self, trial: optuna.Trial) -> int:
        """How many of the budget's ``reports`` parts the trial trains: its share, rounded, at least one."""
        share = self.share if isinstance(self.share, float) else _suggest(trial, SHARE, self.share)
        return min(self.reports, max(1, round(float(share) * self.reports)))

    def fits(self, values: dict[str, Any]) -> dict[str, Any]:
        """Those of ``values`` (flag -> value) that lie in the space: what a first trial can be given."""
        out = {}
        for name, dist in self.params.items():
            if name in values and values[name] is not None:
                try:
                    if dist._contains(dist.to_internal_repr(values[name])):  # noqa: SLF001
                        out[name] = values[name]
                except (ValueError, TypeError):
                    pass
        return out

    def starts(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The first trials of a new study: the config's own settings (those in the space) for the whole budget,
        then, when the share is searched, the same for half of it. Random trials follow, then Optuna's own."""
        own = self.fits(config)
        if not isinstance(self.share, optuna.distributions.FloatDistribution):
            return [own] if own else []
        return [{**own, SHARE: share} for share in (1.0, 0.5) if self.share._contains(share)]  # noqa: SLF001


def _suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Value:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, optuna.distributions.FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _distribution(flag: str, spec: Any, where: str) -> optuna.distributions.BaseDistribution:
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{where}: {flag}: choices must be a non-empty list")
        return optuna.distributions.CategoricalDistribution(choices)
    low, high = spec.get("low"), spec.get("high")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise UsageError(f"{where}: {flag}: give {{choices: [...]}} or {{low: A, high: B}} (with log: true or "
                         f"step: S), not {spec}")
    if low > high:
        raise UsageError(f"{where}: {flag}: low {low} is above high {high}")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and (low <= 0 or step is not None):
        raise UsageError(f"{where}: {flag}: a log scale needs low > 0 and no step")
    if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)):
        return optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log, step=step)


def _read(path: Path | str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"{where} does not exist; give a YAML file like charrnn/tune/space.yaml") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) - {"space", SHARE, "reports", "pruner"}:
        raise UsageError(f"{where}: give a mapping with the keys space, {SHARE}, reports and pruner (see "
                         "charrnn/tune/space.yaml)")
    return data


def default_path() -> Path:
    return Path(str(resources.files("charrnn.tune") / "space.yaml"))


def load_space(overlays: list[str] | tuple[str, ...] = ()) -> Space:
    """The default space with each ``--space`` file laid over it, key by key."""
    merged: dict[str, Any] = {"space": {}, SHARE: 1.0, "reports": 8, "pruner": {}}
    for path, where in [(default_path(), "charrnn/tune/space.yaml"), *[(p, f"--space {p}") for p in overlays]]:
        data = _read(path, where)
        merged["space"].update(data.get("space") or {})
        merged["pruner"].update(data.get("pruner") or {})
        merged["reports"] = data.get("reports", merged["reports"])
        merged[SHARE] = data.get(SHARE, merged[SHARE])
    params, fixed = {}, {}
    for flag, spec in merged["space"].items():
        if not isinstance(flag, str) or flag.split(".")[0] not in ("model", "data", "trainer"):
            raise UsageError(f"--space: {flag}: give a train.py flag under model., data. or trainer. "
                             "(e.g. model.rnn_size)")
        if spec is None:
            continue
        if isinstance(spec, dict):
            params[flag] = _distribution(flag, spec, "--space")
        else:
            fixed[flag] = spec
    reports = merged["reports"]
    if not isinstance(reports, int) or isinstance(reports, bool) or reports < 1:
        raise UsageError(f"--space: reports {reports!r}: give a whole number ≥1 (validations per trial)")
    pruner = merged["pruner"]
    if set(pruner) - {"min_resource", "reduction_factor"} or not all(
            isinstance(v, int) and v >= 1 for v in pruner.values()):
        raise UsageError(f"--space: pruner {pruner}: give min_resource and reduction_factor, whole numbers ≥1")
    return Space(params, fixed, _share(merged[SHARE]), reports, pruner)


def _share(spec: Any) -> optuna.distributions.FloatDistribution | float:
    """``train_share``: a number in (0, 1], or a range of them."""
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1

    if ok(spec):
        return float(spec)
    if isinstance(spec, dict) and set(spec) <= {"low", "high", "log", "step"} and ok(spec.get("low")) and \
            ok(spec.get("high")):
        dist = _distribution(SHARE, {**spec, "low": float(spec["low"]), "high": float(spec["high"])}, "--space")
        assert isinstance(dist, optuna.distributions.FloatDistribution)
        return dist
    raise UsageError(f"--space: {SHARE} {spec!r}: give a share of the training budget in (0, 1], or "
                     "{low: A, high: B} within it")


def nest(flags: dict[str, Value]) -> dict[str, Any]:
    """``{"model.rnn_size": 256}`` -> ``{"model": {"rnn_size": 256}}``: a config overlay."""
    out: dict[str, Any] = {}
    for flag, value in flags.items():
        *parents, leaf = flag.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
