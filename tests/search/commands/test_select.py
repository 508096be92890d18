"""``frontier select``: the best front point under budgets, ties, and impossible budgets."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from evaluators.budgets import Budget
from search.knee import knee_index, normalised
from search.report import build_report
from search.select import explain, select_point
from search.spec import StudyFileError, parse_latency
from search.stored import open_stored
from tests.conftest import run_cli
from tests.search._small_studies import SmallStudies

TEACHER_TEST = 0.98


def _front(rows: list[tuple[int, float, float, float, float]]) -> pd.DataFrame:
    """(trial, validation accuracy, test accuracy, size, latency) rows."""
    df = pd.DataFrame(
        rows, columns=["trial", "accuracy", "test_accuracy", "size_bytes", "latency_ms"]
    )
    df["test_accuracy_low"] = df["test_accuracy"] - 0.01
    df["test_accuracy_high"] = df["test_accuracy"] + 0.01
    df["summary"] = "w0.5, bits 4"
    return df


FRONT = _front(
    [
        (1, 0.99, 0.975, 40_000, 0.60),
        (2, 0.985, 0.970, 9_000, 0.40),
        (3, 0.98, 0.970, 7_000, 0.45),  # ties trial 2 on test accuracy, smaller
        (4, 0.97, 0.960, 4_000, 0.30),
        (5, 0.99, 0.950, 5_000, 0.20),  # best on validation, worse on test
    ]
)


def test_budget_met_picks_the_highest_test_accuracy() -> None:
    sel = select_point(
        FRONT, Budget(max_size_bytes=20_000, max_latency_ms=0.5), reference_accuracy=TEACHER_TEST
    )
    # trial 1 is too large and too slow; trials 2 and 3 tie at 97.0%: the smaller wins
    assert sel.chosen == 3
    assert sel.table.set_index("trial").loc[1, "meets"] == False  # noqa: E712
    text = explain(sel, teacher_size=160_000)
    assert "Selected trial 3" in text and "22.9x smaller than the teacher" in text
    assert "Tie: trial 2 has the same accuracy but is larger (9,000 B" in text
    assert "Runner-up: trial 4" in text
    assert "1 front point(s) miss a budget (1 over size, 1 over latency)" in text


def test_test_accuracy_ranks_not_validation() -> None:
    sel = select_point(FRONT, Budget(max_latency_ms=0.25), reference_accuracy=TEACHER_TEST)
    assert sel.chosen == 5  # the only one this fast
    sel = select_point(FRONT, Budget(max_size_bytes=5_000), reference_accuracy=TEACHER_TEST)
    assert sel.chosen == 4  # 96.0% test beats trial 5's 95.0% although 5 is 99% on validation


def test_ties_on_accuracy_and_size_go_to_the_faster_then_the_earlier_trial() -> None:
    front = _front(
        [(7, 0.9, 0.9, 1_000, 0.3), (3, 0.9, 0.9, 1_000, 0.2), (9, 0.9, 0.9, 1_000, 0.2)]
    )
    sel = select_point(front, Budget(), reference_accuracy=0.9)
    assert sel.chosen == 3


def test_drop_budget_is_measured_from_the_teacher_in_points() -> None:
    sel = select_point(FRONT, Budget(max_accuracy_drop=1.0), reference_accuracy=TEACHER_TEST)
    # drop of trial 1: 0.5 points; of trials 2, 3: 1.0 point (exactly the budget: meets)
    meets = sel.table.set_index("trial")["meets"]
    assert meets.to_dict() == {1: True, 2: True, 3: True, 4: False, 5: False}
    assert sel.chosen == 1


def test_impossible_budget_names_the_closest_point_and_what_it_misses() -> None:
    budgets = Budget(max_size_bytes=3_000, max_latency_ms=0.25, max_accuracy_drop=0.5)
    sel = select_point(FRONT, budgets, reference_accuracy=TEACHER_TEST)
    assert sel.chosen is None
    # relative excess: trial 4 = 1000/3000 + 0.05/0.25 + 1.5/1 = 2.03; trial 5 = 2000/3000 + 0
    # + 2.5/1 = 3.17; trial 2 = 2 + 0.6 + 0.5 = 3.1
    assert sel.closest == 4
    text = explain(sel)
    assert "No front point meets the budgets" in text
    assert "Closest: trial 4" in text
    assert "misses --max-size 3,000 B by 1,000 B (+33.3%)" in text
    assert "misses --max-latency 0.250 ms by 0.050 ms (+20.0%)" in text
    assert "misses --max-drop 0.50 points by 1.50 points" in text
    # no point meets any two of the three budgets, so relaxing one alone does not help
    assert sel.relaxations == {
        "max_size_bytes": None,
        "max_latency_ms": None,
        "max_accuracy_drop": None,
    }


def test_relaxing_one_budget_names_the_value_that_admits_a_point() -> None:
    budgets = Budget(max_size_bytes=4_500, max_accuracy_drop=1.0)
    sel = select_point(FRONT, budgets, reference_accuracy=TEACHER_TEST)
    assert sel.chosen is None
    # with the drop budget held, the smallest admissible point is trial 3 (7,000 B)
    assert sel.relaxations["max_size_bytes"] == (7_000.0, 3)
    # with the size budget held, trial 4 (4,000 B) needs a drop budget of 2.0 points
    value, trial = sel.relaxations["max_accuracy_drop"]  # type: ignore[misc]
    assert trial == 4 and math.isclose(value, 2.0)
    assert "--max-size 7,000 B would admit trial 3" in explain(sel)


def test_points_without_test_accuracy_fall_back_to_validation_with_a_note() -> None:
    front = FRONT.copy()
    front.loc[front["trial"] == 4, "test_accuracy"] = np.nan
    sel = select_point(front, Budget(max_size_bytes=4_500), reference_accuracy=TEACHER_TEST)
    assert sel.chosen == 4 and sel.row(4)["score_split"] == "validation"
    assert "ranked on their validation accuracy" in explain(sel)


def test_bad_budgets_from_flags_name_the_flag() -> None:
    with pytest.raises(ValueError, match=r"'--max-size' must be a number > 0\. Got -1 instead\."):
        Budget.from_flags(max_size_bytes=-1)
    with pytest.raises(ValueError, match="'--max-drop' must be a number >= 0"):
        Budget.from_flags(max_accuracy_drop=math.nan)


@pytest.mark.parametrize(
    ("text", "ms"), [("0.5ms", 0.5), ("500us", 0.5), ("2s", 2000.0), ("1.5", 1.5), (3, 3.0)]
)
def test_parse_latency(text: object, ms: float) -> None:
    assert math.isclose(parse_latency(text), ms)


@pytest.mark.parametrize("text", ["", "0ms", "-1ms", "5 parsecs", "ms", True])
def test_parse_latency_refuses(text: object) -> None:
    with pytest.raises(StudyFileError, match="'--max-latency' must be a positive latency"):
        parse_latency(text)


def test_knee_is_nearest_the_ideal_point_after_normalisation() -> None:
    # accuracy up, size down: the middle point is the compromise
    pts = np.array([[0.99, 100_000.0], [0.98, 10_000.0], [0.90, 1_000.0]])
    dirs = ["maximize", "minimize"]
    assert knee_index(pts, dirs) == 1
    norm = normalised(pts, dirs, log_scale=[False, True])
    assert norm[:, 0].tolist() == pytest.approx([0.0, 1 / 9, 1.0])
    assert norm[:, 1].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert knee_index(pts[:1], dirs) == 0  # one point is its own knee
    with pytest.raises(ValueError, match="at least one point"):
        knee_index(np.zeros((0, 2)), dirs)


@pytest.mark.slow
def test_select_command_on_a_real_study(small_studies: SmallStudies) -> None:
    report = build_report(open_stored(str(small_studies.joint), out=small_studies.root))
    front = report.front
    teacher_test = float(report.teacher["test_accuracy"])
    # the expected choice, computed here from the report's test figures
    ok = front[front["size_bytes"] <= 30_000]
    best = ok.sort_values(["test_accuracy", "size_bytes"], ascending=[False, True]).iloc[0]
    res = run_cli(
        "select", str(small_studies.joint), "--out", str(small_studies.root), "--max-size", "30KB"
    )
    assert res.returncode == 0, res.stderr
    assert f"Selected trial {int(best['trial'])}" in res.stdout
    assert f"teacher's test accuracy {100 * teacher_test:.2f}%" in res.stdout

    res = run_cli(
        "select",
        "--storage",
        small_studies.storage,
        "--study",
        "joint",
        "--max-size",
        "1KB",
        "--max-latency",
        "1us",
    )
    assert res.returncode == 1, res.stderr
    assert "No front point meets the budgets" in res.stdout
    assert (
        re.search(r"Closest: trial \d+", res.stdout) and "misses --max-size 1,000 B" in res.stdout
    )

    res = run_cli("select", str(small_studies.joint), "--max-latency", "fast")
    assert res.returncode == 2 and "--max-latency" in res.stderr
