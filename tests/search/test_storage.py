"""Storage URLs, the study lock, leases of running trials, and a journal-file study."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search import leases
from search.storage import (
    OPENS_ATTR,
    StorageSettings,
    normalise_url,
    register,
    storage_kind,
)
from tests.conftest import REPO, run_cli
from tests.search._cluster import load, warm_cache
from tests.studyfile import write_study


def test_storage_urls() -> None:
    assert storage_kind("sqlite:////tmp/x.db") == "sqlite"
    assert storage_kind("postgresql://u@h/db") == "postgresql"
    assert storage_kind("postgresql+psycopg2://u@h/db") == "postgresql"
    assert storage_kind("journal:/shared/study.log") == "journal"
    assert storage_kind("mysql+pymysql://u@h/db") == "mysql"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heartbeat_interval": 0}, "'storage.heartbeat_interval' must be a whole number"),
        ({"heartbeat_interval": 10, "grace_period": 10}, "'storage.grace_period' must be longer"),
        ({"max_retry": -1}, "'storage.max_retry' must be >= 0"),
    ],
)
def test_storage_settings_are_checked(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StorageSettings(**kwargs)


def test_processes_creating_one_new_sqlite_study_at_once_create_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = (
        "from search.storage import StorageSettings, open_shared_study\n"
        f"s, opens = open_shared_study('race', {url!r}, StorageSettings(), ['maximize'])\n"
        "print(opens)\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert sorted(int(o) for o in outs) == [0, 1, 2, 3]  # each opened it in turn
    summaries = optuna.get_all_study_summaries(url)
    assert [s.study_name for s in summaries] == ["race"]
    assert optuna.load_study(study_name="race", storage=url).user_attrs[OPENS_ATTR] == 4


def _running_trial(
    study: optuna.Study, lease: dict[str, object], beat: float
) -> optuna.trial.FrozenTrial:
    trial = study.ask({"x": FloatDistribution(0, 1)})
    study._storage.set_trial_system_attr(
        trial._trial_id, leases.LEASE, {**lease, "trial": trial.number}
    )
    study._storage.set_trial_system_attr(trial._trial_id, leases.BEAT, beat)
    return study._storage.get_trial(trial._trial_id)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_running_trial_counts_as_dead_only_when_its_holder_is_known_dead(tmp_path: Path) -> None:
    me = leases.Worker.current()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = {"host": me.host, "machine": me.machine, "started": ""}
    elsewhere = {"host": "other", "machine": "boot/other", "pid": 1, "started": "1"}
    settings = StorageSettings(heartbeat_interval=1, grace_period=5)
    for url in (f"sqlite:///{tmp_path / 'l.db'}", f"journal:{tmp_path / 'l.log'}"):
        from search.storage import make_storage

        study = optuna.create_study(storage=make_storage(url, settings), study_name="l")
        register(study, url, settings)
        now = time.time()
        assert (
            leases.stale_reason(
                _running_trial(study, {**here, "pid": os.getpid()}, now), url, settings
            )
            is None
        )
        reason = leases.stale_reason(
            _running_trial(study, {**here, "pid": dead.pid}, now), url, settings
        )
        assert reason is not None and f"process {me.host}:{dead.pid} died" in reason
        fresh = _running_trial(study, elsewhere, now)
        old = _running_trial(study, elsewhere, now - 60)
        assert leases.stale_reason(fresh, url, settings) is None
        expect_old = "no heartbeat" if url.startswith("journal:") else None  # RDB: Optuna's
        got = leases.stale_reason(old, url, settings)
        assert (got is None) if expect_old is None else (expect_old in got)  # type: ignore[operator]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_failed_trials_queued_again_do_not_count_toward_n_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    settings = StorageSettings()
    from search.storage import make_storage

    study = optuna.create_study(storage=make_storage(url, settings), study_name="c")
    register(study, url, settings)
    first = study.ask({"x": FloatDistribution(0, 1)})
    assert leases.fail_and_retry(study, study._storage.get_trial(first._trial_id), "lost")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert leases.count_finished(trials) == 0
    again = leases.claim_trial(study, 5)
    assert again is not None and again.number == 1 and again.params == trials[0].params
    study.tell(again, [1.0])
    assert leases.count_finished(study.get_trials()) == 1
    # a second attempt on a finished trial changes nothing
    assert not leases.fail_and_retry(study, study.get_trials()[0], "lost")


@pytest.mark.slow
def test_two_workers_share_a_journal_file_study(tmp_path: Path, warm_weights: Path) -> None:
    study_file = write_study(
        tmp_path, study={"name": "journal", "n_trials": 8}, finetune={"epochs": 0}
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    url = f"journal:{tmp_path / 'shared' / 'study.log'}"
    from tests.search._cluster import start_cli

    procs = [
        start_cli(
            "run",
            str(study_file),
            "--storage",
            url,
            "--out",
            str(out),
            "--no-progress",
            log=tmp_path / f"w{i}.log",
        )
        for i in range(2)
    ]
    for i, p in enumerate(procs):
        assert p.wait(timeout=300) == 0, (tmp_path / f"w{i}.log").read_text()[-2000:]
    trials = load(url, "journal").get_trials()
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    status = run_cli("status", "--storage", url, "--study", "journal")
    assert status.returncode == 0 and "trials: 8 of 8 counted (8 complete)" in status.stdout
