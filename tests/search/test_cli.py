"""The real command line, end to end, on the real digits-cnn task with a tiny budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import cli_in_process, run_cli

TINY = """
[study]
name = "{name}"
seed = 0
n_trials = {n}
sampler = "{sampler}"

[task]
name = "digits-cnn"

[space]
students = ["teacher", "w0.5"]
{space_extra}

[distillation]
epochs = 3

[finetune]
epochs = {ft_epochs}
lr = {ft_lr}

[latency]
repeats = 30
warmup = 2

[budget]
max_accuracy_drop = 5.0
"""


def write_study(
    folder: Path,
    name: str = "tiny",
    *,
    n: int = 6,
    sampler: str = "tpe",
    ft_epochs: int = 1,
    ft_lr: float = 1e-3,
    space_extra: str = "",
) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        TINY.format(
            name=name,
            n=n,
            sampler=sampler,
            ft_epochs=ft_epochs,
            ft_lr=ft_lr,
            space_extra=space_extra,
        )
    )
    return path


@pytest.mark.slow
def test_run_writes_outputs_and_a_second_run_adds_trials_without_rerunning(tmp_path: Path) -> None:
    study = write_study(tmp_path, n=6)
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
    study = write_study(tmp_path, "diverge", n=4, ft_lr=1e30)
    res = run_cli("run", str(study), "--no-progress", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    trials = pd.read_csv(tmp_path / "o" / "trials.csv")
    assert len(trials) == 4
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["state"] == "COMPLETE"  # the identity config is not fine-tuned
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) == 3
    assert failed["fail_reason"].str.contains("TrainingDiverged|NonFiniteOutput").all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "[study]\nname = 'x'\ncolour = 1\n[task]\nname='digits-cnn'\n",
            "Unknown key 'study.colour'",
        ),
        (
            "[study]\nname = 'x'\nseed = 'a'\n[task]\nname='digits-cnn'\n",
            "'study.seed' must be an int",
        ),
        (
            "[study]\nname = 'x'\n[task]\nname='digits-cnn'\n[space]\nbits=[4, 12]\n",
            "'space.bits' must hold bit widths",
        ),
        ("[study\nname = ", "is not valid TOML"),
        ("[study]\nname = 'x'\n[task]\nname='nope'\n", "Unknown task 'task.name' = 'nope'"),
        (
            "[study]\nname = 'x'\n[task]\nname='digits-cnn'\n[space.layers.conv9]\nbits=[4]\n",
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
