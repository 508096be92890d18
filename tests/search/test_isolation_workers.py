"""Latency timed alone on the machine, for real: two workers run one study, and no timing
interval a worker traced (``FRONTIER_ISOLATION_TRACE``) overlaps another worker's compute.

Two local ``frontier run`` processes on one SQLite study, and ``--backend ray --workers 2``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from evaluators.latency.isolation import ENABLED_ENV, TRACE_ENV, Interval, conflicts, read_trace
from search.status import latency_wait_text
from tests.conftest import run_cli
from tests.search._cluster import start_cli, warm_cache
from tests.studyfile import write_study


@pytest.fixture(autouse=True)
def _lock_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite turns the lock off (tests/conftest.py); these tests are about it."""
    monkeypatch.setenv(ENABLED_ENV, "on")


def _study(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A 6-trial digits-cnn study with a warm cache, its lock files and trace of its own."""
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "machine"))
    monkeypatch.setenv(TRACE_ENV, str(tmp_path / "trace.jsonl"))
    study_file = write_study(
        tmp_path, study={"name": name, "n_trials": 6}, early_stopping={"enabled": False}
    )
    return study_file, tmp_path / "out"


def _check_trace(trace: list[Interval], workers: set[int]) -> None:
    """Every worker computed and timed, they worked at the same time, and no timing overlaps
    another process's compute or timing."""
    assert workers <= {i.pid for i in trace if i.kind == "timing"}
    assert workers <= {i.pid for i in trace if i.kind == "compute"}
    spans = [
        (min(i.start for i in trace if i.pid == p), max(i.end for i in trace if i.pid == p))
        for p in workers
    ]
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # alive at the same time
    assert conflicts(trace) == []


def _check_waits(out: Path, n: int) -> None:
    """Each trial recorded its wait; ``status`` and the report show the total."""
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == n and (trials["latency_wait_s"] >= 0).all()
    line = f"latency wait (timing alone on the machine): {latency_wait_text(trials)}"
    assert line.endswith(f"({n} trials)")
    status = run_cli("status", str(out / "study.db"))
    assert status.returncode == 0, status.stderr[-3000:]
    assert line in status.stdout.splitlines()
    report = run_cli("report", str(out / "study.db"), "--no-remeasure")
    assert report.returncode == 0, report.stderr[-3000:]
    assert f"- **latency wait**: {latency_wait_text(trials)}" in (out / "report.md").read_text()


@pytest.mark.slow
def test_two_local_workers_never_time_beside_each_other(
    tmp_path: Path, warm_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file, out = _study(tmp_path, "twolocal", monkeypatch)
    warm_cache(warm_weights, out)
    args = ("run", str(study_file), "--out", str(out), "--no-progress")
    procs = [start_cli(*args, log=tmp_path / f"w{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    _check_trace(read_trace(tmp_path / "trace.jsonl"), {p.pid for p in procs})
    _check_waits(out, 6)


@pytest.mark.slow
def test_two_ray_workers_never_time_beside_each_other(
    tmp_path: Path, warm_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file, out = _study(tmp_path, "tworay", monkeypatch)
    warm_cache(warm_weights, out)
    args = ("run", str(study_file), "--backend", "ray", "--workers", "2", "--out", str(out))
    res = run_cli(*args, "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    trace = read_trace(tmp_path / "trace.jsonl")
    trials = pd.read_csv(out / "trials.csv")
    assert trials["worker"].nunique() == 2  # two Ray worker processes ran the trials
    workers = {int(w.rsplit(":", 1)[1]) for w in trials["worker"]}
    _check_trace(trace, workers)
    _check_waits(out, 6)
