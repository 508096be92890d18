"""How a candidate is measured, the tasks it is measured on, and budgets as constraints."""

from __future__ import annotations

from evaluators._base import Candidate, Evaluator
from evaluators.accuracy import AccuracyEvaluator, NonFiniteOutput
from evaluators.budgets import Budget
from evaluators.latency import LatencyEvaluator, LatencySettings
from evaluators.size import SizeEvaluator
from evaluators.tasks import BUILTIN_TASKS
from spaces.cache import WeightCache
from spaces.task import ACCURACY, Metric, Split, Task
from spaces.training import TrainingDiverged, fit, predict

__all__ = [
    "ACCURACY",
    "BUILTIN_TASKS",
    "AccuracyEvaluator",
    "Budget",
    "Candidate",
    "Evaluator",
    "LatencyEvaluator",
    "LatencySettings",
    "Metric",
    "NonFiniteOutput",
    "SizeEvaluator",
    "Split",
    "Task",
    "TrainingDiverged",
    "WeightCache",
    "fit",
    "predict",
]
