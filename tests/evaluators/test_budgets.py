"""The one budget type: its validation table, its messages, and what select reads from it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from evaluators.budgets import LIMIT_BY_FIELD, LIMITS, Budget, BudgetError, Limit


def test_the_table_covers_every_field_once() -> None:
    fields = [f.name for f in dataclasses.fields(Budget)]
    assert [limit.field for limit in LIMITS] == fields
    assert len({limit.key for limit in LIMITS}) == len({limit.flag for limit in LIMITS}) == 4
    assert LIMIT_BY_FIELD["max_size_bytes"].key == "max_size"  # the study file's key
    assert LIMIT_BY_FIELD["max_accuracy_drop"].flag == "--max-drop"


@pytest.mark.parametrize("lim", LIMITS, ids=lambda lim: lim.field)
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, "5"])
def test_a_bad_value_names_the_study_key_or_the_flag(lim: Limit, value: object) -> None:
    expected = f"must be a number {lim.rule}. Got {value!r} instead."
    with pytest.raises(BudgetError) as caught:
        Budget(**{lim.field: value})
    assert str(caught.value) == f"'budget.{lim.key}' {expected}"
    assert caught.value.limit is lim and caught.value.value is value
    with pytest.raises(BudgetError) as caught:
        Budget.from_flags(**{lim.field: value})
    assert str(caught.value) == f"'{lim.flag}' {expected}"
    assert isinstance(caught.value, ValueError)  # what the study-file parser converts


def test_zero_is_a_drop_budget_but_no_other() -> None:
    assert Budget(max_accuracy_drop=0).max_accuracy_drop == 0
    for limit in LIMITS:
        if limit.field != "max_accuracy_drop":
            with pytest.raises(BudgetError, match=rf"'budget\.{limit.key}' must be a number > 0"):
                Budget(**{limit.field: 0})


def test_items_and_describe_list_the_set_limits_in_table_order() -> None:
    budget = Budget(max_bops=2e6, max_size_bytes=20_000, max_accuracy_drop=1)
    assert [(limit.field, value) for limit, value in budget.items()] == [
        ("max_size_bytes", 20_000.0),
        ("max_accuracy_drop", 1.0),
        ("max_bops", 2e6),
    ]
    assert budget.describe() == "size <= 20,000 B, drop <= 1.00 points, BOPs <= 2e+06 BOPs"
    assert budget.active
    assert Budget().describe() == "no budget" and not Budget().active
    assert Budget(max_latency_ms=0.5).describe() == "latency <= 0.500 ms"


def test_excess_is_scaled_by_the_limit_with_one_point_as_the_drops_floor() -> None:
    drop, size = LIMIT_BY_FIELD["max_accuracy_drop"], LIMIT_BY_FIELD["max_size_bytes"]
    assert drop.excess_scale(0.0) == 1.0 and drop.excess_scale(2.5) == 2.5
    assert size.excess_scale(3_000.0) == 3_000.0


def test_constraints_are_within_budget_when_not_positive() -> None:
    budget = Budget(max_size_bytes=1_000, max_latency_ms=2.0, max_accuracy_drop=1.0, max_bops=10)
    figures = {"size_bytes": 900.0, "latency_ms": 2.5, "accuracy": 0.97, "bops": 10.0}
    out = budget.constraints(figures, reference_accuracy=0.98)
    assert list(out) == ["size_bytes", "latency_ms", "bops", "accuracy_drop"]
    assert out["size_bytes"] == -100.0 and out["latency_ms"] == 0.5 and out["bops"] == 0.0
    assert out["accuracy_drop"] == pytest.approx(0.0)
    # a figure not measured yet gives no constraint
    assert budget.constraints({"size_bytes": 2_000.0}, 0.98) == {"size_bytes": 1_000.0}


def test_the_stored_form_round_trips() -> None:
    budget = Budget(max_size_bytes=20_000, max_accuracy_drop=0.5)
    assert Budget(**dataclasses.asdict(budget)) == budget
