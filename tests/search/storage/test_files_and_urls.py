"""Storage URLs and settings, and two real workers sharing a journal-file study.

What every storage must do (one study, claiming, telling, dead workers, resume) is the
contract suite in ``tests/search/storage/test_contract.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.storage import StorageSettings, normalise_url, storage_kind
from tests.conftest import run_cli
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
