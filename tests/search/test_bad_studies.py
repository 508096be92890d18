"""Studies a new user may write, run through the CLI: no traceback, one line saying what is wrong.

An embedding model with 8-bit activations runs; a study where nothing is feasible writes its
outputs and says why in one line; the seed is checked; a drop budget of 0 means "no worse than
the teacher".
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from evaluators.budgets import LIMITS, Budget
from search.cli import main
from search.driver import make_sampler
from search.infeasible import why_nothing_feasible
from search.spec import MAX_SEED, StudyFileError, parse_spec
from tests.studyfile import write_study

#: A tiny study: digits-mlp, the teacher only (nothing distilled), no fine-tuning.
TINY = {
    "task": {"name": "digits-mlp"},
    "space": {"students": ["teacher"]},
    "finetune": {"epochs": 0},
}


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], **sections: object
) -> tuple[int, list[str], Path]:
    study = write_study(tmp_path, **{**TINY, **sections})  # type: ignore[arg-type]
    out = tmp_path / "out"
    code = main(["run", str(study), "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and code == 0, captured.err
    return code, captured.out.splitlines(), out


def test_an_embedding_model_with_8_bit_activations_runs_every_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, out = _run(
        tmp_path,
        capsys,
        study={"name": "tokens", "n_trials": 3},
        task={"name": None, "factory": "tests.spaces.embedding_task:bag_of_tokens"},
        space={"students": ["teacher"], "act_bits": [8]},
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["state"] == "COMPLETE").all(), trials["fail_reason"].tolist()
    int8 = trials[trials["baseline"] == "uniform-int8"].iloc[0]
    assert int8["bits.emb"] == 8 and int8["accuracy"] > 0.8  # the task is easy; ids intact
    assert pd.read_csv(out / "front.csv")["feasible"].all()


def _the_one_line(lines: list[str]) -> str:
    said = [line for line in lines if "feasible" in line.lower()]
    assert len(said) == 1, lines
    return said[0]


def test_a_study_over_budget_everywhere_writes_its_outputs_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, out = _run(
        tmp_path, capsys, study={"name": "tiny", "n_trials": 3}, budget={"max_size": "10B"}
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and not trials["feasible"].any()
    front = pd.read_csv(out / "front.csv")
    assert front.empty and {"trial", "accuracy", "size_bytes"} <= set(front.columns)
    assert (out / "front.png").stat().st_size > 0
    smallest = trials["constraint.size_bytes"].min() + 10  # the constraint is size - limit
    assert _the_one_line(lines) == (
        f"frontier: No feasible trial: all 3 trials are over budget.max_size "
        f"(smallest {smallest:,.0f} B > 10 B)."
    )


@pytest.mark.parametrize("warm_starts", [False, True])
def test_a_study_whose_every_trial_fails_writes_its_outputs_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], warm_starts: bool
) -> None:
    # with warm starts on (the default), the student's distillation diverges first in the
    # sensitivity analysis: that model gets no warm start and the study goes on
    n = 4 if warm_starts else 2
    code, lines, out = _run(
        tmp_path,
        capsys,
        study={"name": "tiny", "n_trials": n},
        space={"students": ["w0.5"]},
        distillation={"epochs": 1, "lr": 1e12},
        sensitivity={"enabled": warm_starts, "method": "measured"},
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    trials = trials[trials["state"] != "WAITING"]
    assert len(trials) == n and (trials["state"] == "FAIL").all()
    reason = trials["fail_reason"].iloc[0]
    assert (trials["fail_reason"] == reason).all() and reason.startswith("TrainingDiverged")
    assert pd.read_csv(out / "front.csv").empty and (out / "front.png").exists()
    assert _the_one_line(lines) == f"frontier: No feasible trial: all {n} trials failed ({reason})."


def test_the_line_counts_every_reason_when_they_differ() -> None:
    trials = pd.DataFrame(
        {
            "state": ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "FAIL", "FAIL", "PRUNED"],
            "constraint.size_bytes": [5.0, -1.0, 2.0, None, None, None, None],
            "constraint.accuracy_drop": [-1.0, 0.5, 0.25, None, None, None, None],
            "fail_reason": ["", "", "", "OOM\ntrace", "OOM", "ValueError: x", ""],
        }
    )
    budget = Budget(max_size_bytes=100, max_accuracy_drop=1.0)
    assert why_nothing_feasible(trials, budget) == (
        "No feasible trial among 7: 2 over budget.max_size (smallest 102 B > 100 B); "
        "2 over budget.max_accuracy_drop (smallest 1.25 points > 1.00 points); "
        "3 failed (most often, 2 of 3: OOM); 1 stopped early."
    )
    nothing = trials.iloc[:0]
    assert why_nothing_feasible(nothing) == "No feasible trial: no trial has finished yet."


def test_each_budget_names_the_constraint_a_study_stores() -> None:
    figures = {"size_bytes": 1.0, "latency_ms": 1.0, "bops": 1.0, "accuracy": 0.5}
    budget = Budget(max_size_bytes=1, max_latency_ms=1.0, max_accuracy_drop=0, max_bops=1.0)
    assert set(budget.constraints(figures, 0.5)) == {limit.constraint for limit in LIMITS}


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**32, True, 1.5])
def test_a_bad_seed_names_the_key_and_the_range(seed: object) -> None:
    message = f"'study.seed' must be an int in the range [0, {MAX_SEED}]. Got {seed!r} instead."
    with pytest.raises(StudyFileError, match=re.escape(message) + "|must be an int. Got"):
        parse_spec({"study": {"name": "s", "seed": seed}, "task": {"name": "digits-cnn"}})


def test_the_largest_seed_leaves_room_for_resumed_and_parallel_samplers() -> None:
    import optuna

    spec = parse_spec({"study": {"name": "s", "seed": MAX_SEED}, "task": {"name": "digits-cnn"}})
    for sampler in ("tpe", "nsga2", "random"):
        spec = parse_spec(
            {**spec.to_data(), "study": {**spec.to_data()["study"], "sampler": sampler}}
        )
        # thousands of stored trials and a hundred workers later, numpy still takes the seed
        study = optuna.create_study(sampler=make_sampler(spec, offset=10_000 + 7919 * 100))
        study.ask().suggest_float("x", 0.0, 1.0)


def test_a_seed_of_minus_one_ends_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = write_study(tmp_path, study={"seed": -1})
    assert main(["run", str(study), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"frontier: error: 'study.seed' must be an int in the range [0, {MAX_SEED}]. "
        "Got -1 instead."
    ]


def test_a_drop_budget_of_zero_means_no_worse_than_the_teacher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StudyFileError, match=r"'budget.max_accuracy_drop' must be a number >= 0"):
        parse_spec(
            {"study": {"name": "s"}, "task": {"name": "x"}, "budget": {"max_accuracy_drop": -0.5}}
        )
    code, _, out = _run(
        tmp_path, capsys, study={"name": "tiny", "n_trials": 3}, budget={"max_accuracy_drop": 0}
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv").set_index("baseline")
    teacher = trials.loc["teacher"]
    assert teacher["constraint.accuracy_drop"] == 0 and teacher["feasible"]  # its own drop is 0
    # a candidate is feasible exactly when it is at least as accurate as the teacher
    done = trials[trials["state"] == "COMPLETE"]
    assert (done["feasible"] == (done["accuracy"] >= teacher["accuracy"])).all()
