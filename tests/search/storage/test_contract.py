"""One contract over every storage frontier supports (SQLite, journal file, PostgreSQL).

Each test runs once per storage kind (the ``storage_url`` fixture) and goes through the public
functions a worker uses: :func:`search.storage.open_shared_study`,
:func:`search.storage.study_lock`, :func:`search.leases.claim_trial`, :func:`search.trial.tell`
and :func:`search.leases.recover_stale_trials`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search import leases
from search.keepalive import Keepalive
from search.objective_names import DEFAULT_OBJECTIVES, directions
from search.outcome import PRUNED, TrialOutcome
from search.storage import OPENS_ATTR, StorageSettings, make_storage, open_shared_study, study_lock
from search.trial import tell
from tests.conftest import REPO
from tests.search._cluster import wait_for
from tests.search.storage._worker import SETTINGS

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _start(action: str, url: str, name: str, n_trials: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search.storage._worker", action, url, name, str(n_trials)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )


def _said(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The next JSON line a worker printed."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the worker said nothing (exit status {proc.wait(timeout=60)})"
    return dict(json.loads(line))


def _open(url: str, name: str, objectives: int = 1) -> optuna.Study:
    dirs = directions(DEFAULT_OBJECTIVES) if objectives == 3 else ["maximize"]
    return open_shared_study(name, url, SETTINGS, dirs)[0]


def _reread(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as a fresh process would read them (a new storage object)."""
    storage = make_storage(url, StorageSettings())
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def _claim_and_tell(study: optuna.Study, n_trials: int, value: float) -> optuna.trial.FrozenTrial:
    trial = leases.claim_trial(study, n_trials)
    assert trial is not None
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, value)
    return study.trials[trial.number]


# ---------------------------------------------------------------- one study, opened anywhere


def test_a_study_opened_twice_is_one_study(storage_url: str, study_name: str) -> None:
    first, opens_first = open_shared_study(study_name, storage_url, SETTINGS, ["maximize"])
    _claim_and_tell(first, 5, 0.5)
    second, opens_second = open_shared_study(study_name, storage_url, SETTINGS, ["maximize"])
    assert (opens_first, opens_second) == (0, 1)
    assert second.user_attrs[OPENS_ATTR] == 2
    assert [t.value for t in second.get_trials()] == [0.5]
    names = optuna.study.get_all_study_names(make_storage(storage_url, StorageSettings()))
    assert names.count(study_name) == 1


@pytest.mark.slow  # three worker processes start (torch imports): ~10 s
def test_workers_in_several_processes_share_one_study_and_stop_at_exactly_n_trials(
    storage_url: str, study_name: str
) -> None:
    n_trials = 9
    workers = [_start("claim", storage_url, study_name, n_trials) for _ in range(3)]
    reports = [_said(w) for w in workers]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    assert sorted(r["opens"] for r in reports) == [0, 1, 2]  # created once, then opened
    claimed = sorted(n for r in reports for n in r["numbers"])
    assert claimed == list(range(n_trials))  # no trial twice, none beyond n_trials
    trials = _reread(storage_url, study_name)
    assert [t.number for t in trials] == claimed
    assert all(t.state == TrialState.COMPLETE and t.value == t.params["x"] for t in trials)
    assert all(t.user_attrs[leases.WORKER_ATTR] for t in trials)


def test_the_study_lock_is_exclusive_across_processes(storage_url: str, study_name: str) -> None:
    _open(storage_url, study_name)  # the storage exists
    with study_lock(storage_url, study_name):
        other = _start("lock", storage_url, study_name)
        assert _said(other) == {"waiting": True}
        time.sleep(0.5)
        assert other.poll() is None  # still waiting for the lock this process holds
    assert _said(other) == {"locked": True}
    assert other.wait(timeout=60) == 0


def test_claiming_counts_running_trials_and_stops_at_n_trials(
    storage_url: str, study_name: str
) -> None:
    study = _open(storage_url, study_name)
    held = [leases.claim_trial(study, 3) for _ in range(3)]
    assert [t.number for t in held if t is not None] == [0, 1, 2]
    assert leases.claim_trial(study, 3) is None  # three running trials fill the study
    study.tell(held[0], 1.0)  # type: ignore[arg-type]
    assert leases.claim_trial(study, 3) is None
    assert leases.claim_trial(study, 4) is not None  # a larger n_trials claims one more


# ---------------------------------------------------------------- what is told is what is read


def test_told_outcomes_read_back_the_same(storage_url: str, study_name: str) -> None:
    study = _open(storage_url, study_name, objectives=3)
    measured = TrialOutcome(
        {"accuracy": 0.9375, "size_bytes": 12345.0, "latency_ms": 0.123456789, "bops": 4.5e6},
        {"accuracy": -0.5, "size": 0.25},
    )
    skipped = TrialOutcome(
        {"accuracy": math.nan, "size_bytes": 99999.0, "latency_ms": math.nan},
        {"size": 1.0},
        objective_values={"accuracy": 0.0, "size_bytes": 99999.0, "latency_ms": 1e9},
        skipped="over budget before training: size",
    )
    stopped = TrialOutcome(
        {"accuracy": 0.5, "size_bytes": 2048.0},
        {"accuracy": 2.0},
        state=PRUNED,
        reason="dominated at rung 1",
    )
    trials = [leases.claim_trial(study, 4) for _ in range(4)]
    for trial in trials:
        assert trial is not None
        trial.suggest_int("bits", 2, 8)
        trial.suggest_categorical("student", ["teacher", "w0.5"])
    failure = TrialOutcome.failed("RuntimeError: boom")
    for trial, outcome in zip(trials, (measured, skipped, stopped, failure), strict=True):
        tell(study, trial, outcome, DEFAULT_OBJECTIVES)  # type: ignore[arg-type]

    told = {t.number: t.params for t in trials if t is not None}
    done, skip, pruned, failed = _reread(storage_url, study_name)
    assert {t.number: t.params for t in (done, skip, pruned, failed)} == told
    assert [t.state for t in (done, skip, pruned, failed)] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
    ]
    assert done.values == measured.values_for(DEFAULT_OBJECTIVES)
    assert {k: done.user_attrs[k] for k in measured.figures} == measured.figures
    assert done.constraints == measured.constraints
    assert skip.values == skipped.values_for(DEFAULT_OBJECTIVES)
    assert math.isnan(skip.user_attrs["accuracy"]) and math.isnan(skip.user_attrs["latency_ms"])
    assert skip.user_attrs["skipped"] == skipped.skipped and skip.constraints == {"size": 1.0}
    assert pruned.values is None and pruned.user_attrs["prune_reason"] == "dominated at rung 1"
    assert {k: pruned.user_attrs[k] for k in stopped.figures} == stopped.figures
    assert pruned.constraints == stopped.constraints
    assert failed.values is None and failed.user_attrs["fail_reason"] == "RuntimeError: boom"
    assert leases.count_finished([done, skip, pruned, failed]) == 4  # a failure counts


# ---------------------------------------------------------------- dead workers, resume


def test_a_dead_worker_trial_is_failed_with_its_reason_and_retried_first(
    storage_url: str, study_name: str
) -> None:
    study = _open(storage_url, study_name)
    mine = leases.claim_trial(study, 10)  # held by this live process: never taken away
    assert mine is not None
    keepalive = Keepalive(study)  # its heartbeats stay fresh, however long this takes
    keepalive.hold(mine, beat=False)
    worker = _start("hold", storage_url, study_name, 10)
    victim = _said(worker)
    assert worker.wait(timeout=60) == 0  # it died holding its trial
    study.enqueue_trial({"x": 0.25})  # queued work (a baseline) waits behind the retry

    retry = leases.claim_trial(study, 10)
    assert retry is not None
    assert retry.params == victim["params"]
    assert retry.user_attrs[leases.RETRY_OF_ATTR] == victim["number"]
    trials = {t.number: t for t in _reread(storage_url, study_name)}
    dead = trials[victim["number"]]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"].startswith("worker lost: process ")
    assert trials[mine.number].state == TrialState.RUNNING
    assert leases.count_finished(list(trials.values())) == 0  # the retried failure counts not
    queued = leases.claim_trial(study, 10)
    assert queued is not None and queued.suggest_float("x", 0.0, 1.0) == 0.25
    keepalive.close()


def test_a_remote_worker_trial_fails_once_its_heartbeat_is_older_than_the_grace_period(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # seen from another machine: the process table says nothing, only heartbeats do
    monkeypatch.setattr(leases.Worker, "visible", lambda self: False)
    study = _open(storage_url, study_name)
    started = time.monotonic()
    trial = leases.claim_trial(study, 5)
    assert trial is not None
    trial.suggest_float("x", 0.0, 1.0)
    keepalive = Keepalive(study)
    keepalive.hold(trial)
    if time.monotonic() - started < SETTINGS.grace_period:
        assert leases.recover_stale_trials(study) == []  # a fresh heartbeat
    keepalive.close()  # the worker is gone: no more heartbeats
    wait_for(
        lambda: leases.recover_stale_trials(study) == [trial.number], 30, "the stale heartbeat"
    )
    # SQLite keeps heartbeats in whole seconds: up to one second early
    assert time.monotonic() - started >= SETTINGS.grace_period - 1

    trials = _reread(storage_url, study_name)
    assert trials[trial.number].state == TrialState.FAIL
    (queued,) = [t for t in trials if t.user_attrs.get(leases.RETRY_OF_ATTR) == trial.number]
    assert queued.state == TrialState.WAITING and queued.params == trial.params
    assert "no heartbeat" in queued.user_attrs["retry_reason"]
    assert queued.system_attrs["retry_history"] == [trial.number]
    again = leases.claim_trial(study, 5)
    assert again is not None and again.number == queued.number and again.params == trial.params


def test_a_resumed_study_continues_to_n_trials_keeping_what_it_holds(
    storage_url: str, study_name: str
) -> None:
    n_trials = 5
    first = _open(storage_url, study_name)
    kept = [_claim_and_tell(first, n_trials, v) for v in (0.1, 0.2)]
    interrupted = leases.claim_trial(first, n_trials)
    assert interrupted is not None
    interrupted.suggest_float("x", 0.0, 1.0)
    frozen = first.trials[interrupted.number]
    assert leases.fail_and_retry(first, frozen, "interrupted (Ctrl-C)")
    assert not leases.fail_and_retry(first, first.trials[interrupted.number], "again")
    del first

    resumed = _open(storage_url, study_name)
    values = []
    while (trial := leases.claim_trial(resumed, n_trials)) is not None:
        trial.suggest_float("x", 0.0, 1.0)
        resumed.tell(trial, 1.0 + trial.number)
        values.append(trial.params["x"])
    trials = _reread(storage_url, study_name)
    assert leases.count_finished(trials) == n_trials
    assert [(t.number, t.params, t.value) for t in trials[:2]] == [
        (t.number, t.params, t.value) for t in kept
    ]
    failed = trials[interrupted.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    retry = next(t for t in trials if t.user_attrs.get(leases.RETRY_OF_ATTR) == failed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert values[0] == failed.params["x"]  # the retry ran first
    assert len(trials) == n_trials + 1  # the failed attempt does not count


def test_claims_ask_for_stale_heartbeats_at_most_every_interval_unless_the_study_is_full(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    real = optuna.storages.fail_stale_trials
    monkeypatch.setattr(
        optuna.storages, "fail_stale_trials", lambda study: calls.append(1) or real(study)
    )
    monkeypatch.setattr(leases, "_last_recovery", {})
    clock = [1000.0]
    monkeypatch.setattr(leases, "_clock", lambda: clock[0])
    study = _open(storage_url, study_name)
    # the first claim looks (nothing runs yet); the next two, at the same time, do not ask
    held = [leases.claim_trial(study, 4) for _ in range(3)]
    assert all(t is not None for t in held)
    assert calls == []
    clock[0] += leases.RECOVERY_INTERVAL_S
    assert leases.claim_trial(study, 4) is not None
    assert len(calls) == 1  # the interval passed
    assert leases.claim_trial(study, 4) is None  # full: asks at once, finds nothing stale
    assert len(calls) == 2
