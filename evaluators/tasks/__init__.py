"""Built-in tasks, by the name a study file uses in ``[task] name``."""

from __future__ import annotations

from collections.abc import Callable

from evaluators._cache import WeightCache
from evaluators._task import Task
from evaluators.tasks.digits import digits_cnn, digits_mlp

#: ``factory(cache=..., seed=...) -> Task`` for each built-in task name.
BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "digits-cnn": digits_cnn,
    "digits-mlp": digits_mlp,
}

__all__ = ["BUILTIN_TASKS", "WeightCache"]
