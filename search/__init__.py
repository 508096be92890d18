"""Drivers and results: the Optuna driver, Pareto fronts, result tables, the CLI.

Names are imported on first use, so that a module of this package can be imported without
torch (Ray imports :mod:`search.ray_backend` in every worker before it may run a trial).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.objective import OBJECTIVES, StudyContext, evaluate_config
    from search.outcome import TrialOutcome
    from search.pareto import hypervolume, non_dominated
    from search.spec import StudyFileError, StudySpec, load_spec, parse_spec

_WHERE = {
    "OBJECTIVES": "search.objective",
    "StudyContext": "search.objective",
    "TrialOutcome": "search.outcome",
    "evaluate_config": "search.objective",
    "hypervolume": "search.pareto",
    "non_dominated": "search.pareto",
    "StudyFileError": "search.spec",
    "StudySpec": "search.spec",
    "load_spec": "search.spec",
    "parse_spec": "search.spec",
}

__all__ = [
    "OBJECTIVES",
    "StudyContext",
    "StudyFileError",
    "StudySpec",
    "TrialOutcome",
    "evaluate_config",
    "hypervolume",
    "load_spec",
    "non_dominated",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
