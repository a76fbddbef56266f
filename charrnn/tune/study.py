"""The Optuna study and where it is kept: a SQLite file beside the search's output by default, or a database
that workers on several machines share (``--storage postgresql://...``).

Nothing is lost: a trial is written when it starts and when it ends. A trial whose worker was stopped
(Ctrl-C, ``kill``) is marked failed, with the reason, and queued again with the same settings; a worker
killed outright (``kill -9``, a power cut) stops sending its heartbeat, and the next worker to start a trial
after ``GRACE_S`` does the same for it. Optuna hands a queued trial to one worker only.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from charrnn.errors import UsageError
from charrnn.tune.space import Space

HEARTBEAT_S = 10
GRACE_S = 60
RETRIES = 3  # a trial interrupted more often than this is left failed
# Finished trials before TPE models the losses: the queued starts (the config's own settings, for the whole
# budget and for half of it), then random ones. A short search spends most of its time here: few of them.
STARTUP_TRIALS = 4


def storage_url(storage: str | None, out: Path) -> str:
    """``--storage`` as given, or the SQLite file ``OUT/study.db``."""
    if storage:
        return storage
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out / 'study.db').resolve()}"


def open_storage(url: str, attempts: int = 5) -> RDBStorage:
    """The study's database, with heartbeats. Workers that start at once on a new database each create Optuna's
    tables, and all but one fail (a duplicate table or type): those try again once the tables are there."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, TPE's group
    for attempt in range(attempts):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
                              engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
        except ImportError:
            raise UsageError(f"--storage {url}: its database driver is missing; for PostgreSQL: pip install "
                             "'psycopg[binary]' (or name the driver you have: postgresql+psycopg2://...)") from None
        except (IntegrityError, ProgrammingError, OperationalError) as e:
            raced = isinstance(e, IntegrityError) or "already exists" in str(e) or "locked" in str(e)
            if not raced or attempt == attempts - 1:
                raise UsageError(f"--storage {url}: cannot open it: {_first_line(e)}") from None
            time.sleep(1 + random.random())
        except Exception as e:  # sqlalchemy's other errors: a wrong URL, a server that does not answer
            raise UsageError(f"--storage {url}: cannot open it: {_first_line(e)}") from None
    raise AssertionError("unreachable")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def open_study(name: str, storage: RDBStorage, space: Space, seed: int | None) -> tuple[optuna.Study, bool]:
    """The study ``name`` in ``storage``, created if it is not there; True if this call created it (the one
    worker that queues the config's own settings as the first trial)."""
    optuna.logging.set_verbosity(logging.ERROR)  # our own line per trial says more, without tracebacks
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=STARTUP_TRIALS)
    pruner = optuna.pruners.SuccessiveHalvingPruner(**{"min_resource": 2, "reduction_factor": 3, **space.pruner})
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="minimize")
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False


def worker_name(given: str | None) -> str:
    return given or socket.gethostname()


def seconds(trial: FrozenTrial) -> float:
    start, end = trial.datetime_start, trial.datetime_complete
    return (end - start).total_seconds() if start and end else 0.0


def spent_s(study: optuna.Study, worker: str) -> float:
    """The search time ``worker`` has used in this study: its finished trials' durations, so a stopped search
    started again goes on with what is left."""
    return sum(seconds(t) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker
               and t.state.is_finished())


def requeue(study: optuna.Study, number: int, reason: str) -> bool:
    """Marks trial ``number`` failed with ``reason`` (if it is still running) and queues its settings again.
    False if it was interrupted too often already."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    storage = study._storage  # noqa: SLF001 (Optuna's own way to change a trial it does not run)
    if trial.state == TrialState.RUNNING:  # stopped outside the objective, which records the reason itself
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)  # noqa: SLF001
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
    history = trial.system_attrs.get("retry_history", [])
    if len(history) >= RETRIES:
        return False
    RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)(study, storage.get_trial(trial._trial_id))  # noqa: SLF001
    return True

