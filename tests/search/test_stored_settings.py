"""The study's settings round-trip through its storage: read commands need only the storage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest

from search.environment import SPEC_ATTR, stored_spec
from search.spec import load_spec, parse_spec
from tests.conftest import run_cli
from tests.evaluators.test_task_factory import readme_example
from tests.studyfile import study_dict, write_study

#: The README's wine study, with task options, early stopping and storage settings.
WINE: dict[str, Any] = {
    "study": {"name": "wine", "n_trials": 5, "sampler": "random", "seed": None},
    "task": {
        "name": None,
        "factory": "my_tasks:wine_task",
        "options": {"hidden": 12, "epochs": 30},
    },
    "space": {"students": None, "bits": [4, 8, 32]},
    "distillation": {"epochs": 5},
    "finetune": {"epochs": 2},
    "early_stopping": {"startup_trials": 3, "min_dominating": 1, "margin": 1.0},
    "storage": {"grace_period": 300},
}


def test_every_setting_survives_the_stored_form() -> None:
    spec = parse_spec(
        {
            **study_dict(**WINE),
            "ray": {"workers": 3, "cpus_per_trial": 2},
        }
    )
    assert parse_spec(spec.to_data()) == spec
    assert spec.to_data()["task"] == {
        "factory": "my_tasks:wine_task",
        "options": {"hidden": 12, "epochs": 30},
    }


@pytest.mark.slow
def test_report_select_export_status_work_from_the_storage_alone_for_a_factory_study(
    tmp_path: Path,
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_tasks.py").write_text(readme_example("my_tasks.py"))
    study_file = write_study(tmp_path, **WINE)
    spec = load_spec(study_file)
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{code}{os.pathsep}{old}"
    try:
        res = run_cli("run", str(study_file), "--no-progress")
        assert res.returncode == 0, res.stderr[-3000:]
        results = tmp_path / "results" / "wine"
        # only the storage is left: the study file is gone, the storage moved elsewhere
        study_file.unlink()
        moved = tmp_path / "elsewhere"
        moved.mkdir()
        shutil.copy2(results / "study.db", moved / "study.db")
        db = moved / "study.db"
        url = f"sqlite:///{db}"

        study = optuna.load_study(study_name="wine", storage=url)
        assert parse_spec(study.user_attrs[SPEC_ATTR]) == spec
        assert stored_spec(study) == spec

        status = run_cli("status", str(db))
        assert status.returncode == 0, status.stderr[-3000:]
        assert "wine" in status.stdout

        report = run_cli("report", str(db), "--out", str(moved / "report"))
        assert report.returncode == 0, report.stderr[-3000:]
        assert (moved / "report" / "report.html").exists()

        select = run_cli("select", "--storage", url, "--study", "wine", "--max-drop", "5")
        assert select.returncode == 0, select.stderr[-3000:]

        trial = next(t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE)
        dest = moved / "export"
        export = run_cli("export", str(db), "--trial", str(trial.number), "--dest", str(dest))
        assert export.returncode == 0, export.stderr[-3000:]
        # the task was rebuilt with its options (hidden = 12): the same artifact, byte for byte
        assert (dest / "model.safetensors").stat().st_size == trial.user_attrs["size_bytes"]
    finally:
        os.environ["PYTHONPATH"] = old
