"""Built-in tasks, by the name a study file uses in ``[task] name``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evaluators.tasks._loader import check_task, load_task
from evaluators.tasks.digits import digits_cnn, digits_mlp
from evaluators.tasks.mnist1d import mnist1d_cnn
from evaluators.tasks.tabular import breast_cancer_mlp
from spaces.cache import WeightCache
from spaces.task import Task


def minilm(**kwargs: Any) -> Task:
    """``minilm`` (optional extra): imported only when a study asks for it."""
    from evaluators.tasks.minilm import minilm as build

    return build(**kwargs)


def efficientnet_lite0(**kwargs: Any) -> Task:
    """``efficientnet-lite0`` (optional extra ``vision``): imported only when a study asks."""
    from evaluators.tasks.efficientnet import efficientnet_lite0 as build

    return build(**kwargs)


#: ``factory(cache=..., seed=..., **options) -> Task`` for each built-in task name.
BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "digits-cnn": digits_cnn,
    "mnist1d-cnn": mnist1d_cnn,
    "breast-cancer-mlp": breast_cancer_mlp,
    "digits-mlp": digits_mlp,
    "minilm": minilm,
    "efficientnet-lite0": efficientnet_lite0,
}

__all__ = ["BUILTIN_TASKS", "WeightCache", "check_task", "load_task"]
