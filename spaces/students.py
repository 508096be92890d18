"""A study's own student constructors, named in the study file as ``"package.module:function"``.

``[space.custom_students]`` maps a student name to an importable function that takes no
arguments and returns an untrained ``nn.Module``. Its compressible layers must carry teacher
layer names (a student is a narrower or shallower teacher), so that per-layer settings keep
their meaning; it is distilled from the teacher once per seed, like the built-in students.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from torch import nn

from spaces.config import TEACHER
from spaces.distillation import check_student_layers
from spaces.imports import import_object
from spaces.task import Task


def _checked(name: str, target: str, build: Callable[..., object]) -> Callable[[], nn.Module]:
    def construct() -> nn.Module:
        model = build()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"'space.custom_students.{name}' = {target!r} must return a torch.nn.Module. "
                f"Got {type(model).__name__} instead."
            )
        return model

    return construct


def add_custom_students(task: Task, custom: Mapping[str, str]) -> Task:
    """``task`` with the study's own students added (a new Task; the given one is unchanged).

    Raises:
        ValueError: a name clashes with the teacher or a built-in student, a target cannot be
            imported, does not return a module, or has layers the teacher lacks.
    """
    if not custom:
        return task
    students = dict(task.students)
    for name, target in custom.items():
        if name == TEACHER or name in task.students:
            raise ValueError(
                f"'space.custom_students.{name}' clashes with "
                f"{'the teacher' if name == TEACHER else 'a built-in student'}; rename it."
            )
        build = _checked(name, target, import_object(target, key=f"space.custom_students.{name}"))
        check_student_layers(task, name, build())
        students[name] = build
    return dataclasses.replace(task, students=students)
