"""Drivers and results: the Optuna driver, Pareto fronts, result tables, the CLI."""

from __future__ import annotations

from search.objective import OBJECTIVES, StudyContext, TrialOutcome, evaluate_config
from search.pareto import hypervolume, non_dominated
from search.spec import StudyFileError, StudySpec, load_spec, parse_spec

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
