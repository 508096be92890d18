from __future__ import annotations

import pytest

from spaces.imports import import_object


def test_import_object_finds_callables() -> None:
    assert import_object("evaluators.tasks.digits:digits_cnn", key="task.factory").__name__ == (
        "digits_cnn"
    )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("no_colon", r"'task.factory' must look like"),
        ("not_a_module_xyz:f", r"cannot import module 'not_a_module_xyz'"),
        ("evaluators.tasks.digits:nothing", r"has no 'nothing'"),
        ("evaluators.tasks:BUILTIN_TASKS", r"is not callable"),
    ],
)
def test_import_object_errors_name_the_key(target: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        import_object(target, key="task.factory")
