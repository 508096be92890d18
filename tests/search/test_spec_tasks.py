"""Study-file keys of issue 4: task factory and options, latency mode, BOPs budget."""

from __future__ import annotations

import pytest

from search.spec import StudyFileError, parse_spec


def test_factory_options_mode_and_bops_are_read() -> None:
    spec = parse_spec(
        {
            "study": {"name": "s"},
            "task": {"factory": "pkg.mod:make", "options": {"hidden": 16, "name": "x"}},
            "latency": {"mode": "predicted", "quiet": True},
            "budget": {"max_bops": 2.5e8},
        }
    )
    assert spec.latency.quiet
    assert spec.task == "pkg.mod:make" and spec.task_factory == "pkg.mod:make"
    assert dict(spec.task_options) == {"hidden": 16, "name": "x"}
    assert spec.latency.mode == "predicted" and spec.budget.max_bops == 2.5e8


@pytest.mark.parametrize(
    ("section", "values", "match"),
    [
        (
            "latency",
            {"mode": "guessed"},
            r"'latency.mode' must be one of \['measured', 'predicted'\]",
        ),
        ("latency", {"quiet": "yes"}, r"'latency.quiet' must be true or false"),
        ("budget", {"max_bops": -1}, r"'budget.max_bops' must be a number > 0"),
        ("budget", {"max_bops": "many"}, r"'budget.max_bops' must be a number"),
        ("task", {"options": 3}, r"'task.options' must be a table of keyword arguments"),
    ],
)
def test_bad_values_name_the_key(section: str, values: dict, match: str) -> None:
    data: dict = {"study": {"name": "s"}, "task": {"name": "digits-cnn"}}
    data.setdefault(section, {}).update(values)
    with pytest.raises(StudyFileError, match=match):
        parse_spec(data)
