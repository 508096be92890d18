"""Several ``frontier run`` workers on one study in the real PostgreSQL, and dead workers."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluators import AccuracyEvaluator, SizeEvaluator
from search import leases
from search.driver import open_study
from search.objective import StudyContext
from search.spec import load_spec
from spaces import CompressionConfig, compress
from tests.search._cluster import (
    kill,
    load,
    start_cli,
    wait_for,
    warm_cache,
)
from tests.studyfile import write_study

NO_EARLY_STOP = {"enabled": False}
FAST_HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3}


def _log(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


@pytest.mark.slow
def test_four_workers_x_10_trials_end_with_exactly_40_as_computed(
    tmp_path: Path, postgres_url: str, warm_weights: Path
) -> None:
    study_file = write_study(
        tmp_path, study={"name": "pg4x10", "n_trials": 40}, finetune={"epochs": 0}
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    procs = [
        start_cli(
            "run",
            str(study_file),
            "--storage",
            postgres_url,
            "--out",
            str(out),
            "--no-progress",
            log=log,
        )
        for log in logs
    ]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=300) == 0, _log(log)

    study = load(postgres_url, "pg4x10")
    trials = study.get_trials()
    assert len(trials) == 40
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(40))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work was shared
    assert sum(t.user_attrs.get("baseline") == "teacher" for t in trials) == 1

    # values stored as computed: recompute every candidate (no fine-tuning: deterministic)
    spec = load_spec(study_file)
    ctx = StudyContext(spec, out)
    size, accuracy = SizeEvaluator(), AccuracyEvaluator(ctx.task, split="val")
    for t in trials:
        assert t.values == [t.user_attrs[k] for k in ("accuracy", "size_bytes", "latency_ms")]
        config = CompressionConfig.from_json(t.user_attrs["config"])
        assert ctx.space.config_from_params(t.params) == config
        candidate = compress(ctx.pool, config, finetune=spec.finetune, seed=0)
        assert t.values[0] == accuracy.evaluate(candidate)["accuracy"]
        assert t.values[1] == size.evaluate(candidate)["size_bytes"]


def _running_with_params(url: str, name: str, min_number: int) -> optuna.trial.FrozenTrial | None:
    try:
        study = load(url, name)
    except KeyError:
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number >= min_number and t.params and leases.holder_of(t) is not None:
            return t
    return None


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_retried_by_the_next_worker(
    tmp_path: Path, postgres_url: str, warm_weights: Path
) -> None:
    # 60 fine-tuning epochs: each compressed candidate trains for a few seconds
    study_file = write_study(
        tmp_path,
        study={"name": "pgkill", "n_trials": 3},
        finetune={"epochs": 60},
        early_stopping=NO_EARLY_STOP,
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    args = ("run", str(study_file), "--storage", postgres_url, "--out", str(out), "--no-progress")
    first = start_cli(*args, log=tmp_path / "first.log")
    wait_for(
        lambda: _running_with_params(postgres_url, "pgkill", 1) is not None,
        120,
        "a fine-tuning trial to start",
    )
    time.sleep(1.0)
    kill(first)
    assert first.wait(timeout=30) != 0
    victim = _running_with_params(postgres_url, "pgkill", 1)
    assert victim is not None and victim.state == TrialState.RUNNING

    second = start_cli(*args, log=tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, _log(tmp_path / "second.log")

    trials = load(postgres_url, "pgkill").get_trials()
    failed = trials[victim.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("worker lost: process")
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == victim.params
    assert retry.user_attrs["config"] == victim.user_attrs["config"]
    # the study total counts the retry, not the failed attempt
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    # the retry ran before the queued student baselines, which stay queued
    assert len([t for t in trials if t.state != TrialState.WAITING]) == 4


@pytest.mark.slow
def test_heartbeats_fail_a_dead_remote_worker_trial_after_the_grace_period(
    tmp_path: Path, postgres_url: str, warm_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "pgbeat", "n_trials": 3},
        finetune={"epochs": 60},
        early_stopping=NO_EARLY_STOP,
        storage=FAST_HEARTBEAT,
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    worker = start_cli(
        "run",
        str(study_file),
        "--storage",
        postgres_url,
        "--out",
        str(out),
        "--no-progress",
        log=tmp_path / "worker.log",
    )
    wait_for(
        lambda: _running_with_params(postgres_url, "pgbeat", 1) is not None,
        120,
        "a fine-tuning trial to start",
    )
    kill(worker)
    worker.wait(timeout=30)
    killed_at = time.monotonic()
    victim = _running_with_params(postgres_url, "pgbeat", 1)
    assert victim is not None

    # seen from another machine: the process table says nothing, only heartbeats do
    monkeypatch.setattr(leases.Worker, "visible", lambda self: False)
    study = open_study(load_spec(study_file), postgres_url)
    if time.monotonic() - killed_at < 2.0:
        assert leases.recover_stale_trials(study) == []  # within the grace period
    wait_for(lambda: leases.recover_stale_trials(study) == [victim.number], 30, "the heartbeat")
    assert time.monotonic() - killed_at >= 2.0  # not before the 3 s grace period (less jitter)

    trials = study.get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    queued = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(queued) == 1
    assert queued[0].state == TrialState.WAITING
    assert queued[0].params == victim.params
    assert queued[0].system_attrs["retry_history"] == [victim.number]
    # waiting trials are asked before new ones: the baselines still queued, then the retry
    claimed = [leases.claim_trial(study, 10) for _ in range(3)]
    retry = next(t for t in claimed if t is not None and t.number == queued[0].number)
    assert retry.params == victim.params
