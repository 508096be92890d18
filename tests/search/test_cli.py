"""The real command line, end to end, on the real digits-cnn task with a tiny budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import cli_in_process, run_cli
from tests.studyfile import study_toml, write_study


@pytest.mark.slow
def test_run_writes_outputs_and_a_second_run_adds_trials_without_rerunning(tmp_path: Path) -> None:
    study = write_study(tmp_path, study={"n_trials": 6})
    first = run_cli("run", str(study), "--no-progress")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "results" / "tiny"
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 6
    assert list(trials.columns[:6]) == [
        "trial",
        "state",
        "feasible",
        "baseline",
        "accuracy",
        "size_bytes",
    ]
    assert {"latency_ms", "student", "bits.conv1", "prune.fc1", "front"} <= set(trials.columns)
    # the three baselines ran first
    assert trials["baseline"].fillna("").tolist()[:3] == ["teacher", "uniform-int8", "uniform-int4"]
    assert (trials["state"] == "COMPLETE").all()
    front = pd.read_csv(out / "front.csv")
    assert len(front) >= 1 and front["feasible"].all() and front["front"].all()
    assert (out / "front.png").stat().st_size > 10_000
    assert "Pareto front" in first.stdout

    with sqlite3.connect(out / "study.db") as db:
        starts = dict(db.execute("SELECT number, datetime_start FROM trials").fetchall())

    second = run_cli("run", str(study), "--n-trials", "9", "--no-progress")
    assert second.returncode == 0, second.stderr
    again = pd.read_csv(out / "trials.csv")
    assert len(again) == 9 and again["trial"].tolist() == list(range(9))
    # finished trials kept their values and were not run again
    pd.testing.assert_frame_equal(
        again.iloc[:6][["trial", "accuracy", "size_bytes", "latency_ms"]],
        trials[["trial", "accuracy", "size_bytes", "latency_ms"]],
    )
    with sqlite3.connect(out / "study.db") as db:
        starts_after = dict(db.execute("SELECT number, datetime_start FROM trials").fetchall())
    assert all(starts_after[k] == v for k, v in starts.items())
    # the baselines were not enqueued a second time
    assert again["baseline"].fillna("").tolist().count("teacher") == 1

    third = run_cli("run", str(study), "--n-trials", "9", "--no-progress")
    assert third.returncode == 0 and "already holds 9 finished trials" in third.stdout


@pytest.mark.slow
def test_failing_candidates_become_failed_trials_and_the_study_goes_on(tmp_path: Path) -> None:
    # a learning rate this large makes recovery fine-tuning diverge to NaN
    study = write_study(tmp_path, study={"name": "diverge", "n_trials": 4}, finetune={"lr": 1e30})
    res = run_cli("run", str(study), "--no-progress", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    trials = pd.read_csv(tmp_path / "o" / "trials.csv")
    assert len(trials) == 4
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["state"] == "COMPLETE"  # the identity config is not fine-tuned
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) == 3
    assert failed["fail_reason"].str.contains("TrainingDiverged|NonFiniteOutput").all()


def _bad(**sections: dict[str, object]) -> str:
    """A minimal study file: the study name, the given sections, digits-cnn unless replaced."""
    study = {"name": "x", **sections.pop("study", {})}
    task = {"name": "digits-cnn", **sections.pop("task", {})}
    return study_toml(defaults=False, study=study, task=task, **sections)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_bad(study={"colour": 1}), "Unknown key 'study.colour'"),
        (_bad(study={"seed": "a"}), "'study.seed' must be an int"),
        (_bad(space={"bits": [4, 12]}), "'space.bits' must hold bit widths"),
        ("[study\nname = ", "is not valid TOML"),
        (_bad(task={"name": "nope"}), "Unknown task 'task.name' = 'nope'"),
        (
            _bad(space={"layers": {"conv9": {"bits": [4]}}}),
            "Unknown layer name(s) ['conv9'] in 'space.layers'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    args = ("run", str(path), "--no-progress", "--out", str(tmp_path / "o"))
    # one case through a real process (its exit status), the others in this one (faster)
    real = content.startswith("[study\n")
    res = run_cli(*args) if real else cli_in_process(capsys, *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("frontier: error: ") and message in lines[0]
    assert "Traceback" not in res.stderr + res.stdout


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli_in_process(capsys, "run", "studies/digits_cnn.toml", "--n-trials", "0")
    assert res.returncode == 2 and "--n-trials" in res.stderr
