"""The test split: validation chooses candidates, the test split reports on them.

Choosing the best of many candidates on one split flatters that split, so the figures a
person should quote come from rows the search never looked at, with a 95% bootstrap
interval that shows how much a few hundred rows can say.
"""

from __future__ import annotations

import math

import torch

from evaluators._base import Candidate, Evaluator
from evaluators.accuracy import AccuracyEvaluator
from spaces.task import Metric, Task
from spaces.training import predict

#: Bootstrap resamples; 2,000 keeps the interval's ends stable to about 0.1 point.
RESAMPLES = 2000


def bootstrap_interval(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    metric: Metric,
    *,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over the rows (seeded, repeatable).

    Uses the metric's per-row scores when it has them (one pass, then cheap resampling);
    otherwise recomputes the metric on each resample.
    """
    n = len(targets)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=gen)
    if metric.per_row is not None:
        scores = metric.per_row(outputs, targets).float()
        stats = scores[idx].mean(dim=1)
    else:
        stats = torch.tensor([metric(outputs[i], targets[i]) for i in idx])
    tail = (1.0 - level) / 2
    low, high = torch.quantile(stats.double(), torch.tensor([tail, 1 - tail], dtype=torch.double))
    return float(low), float(high)


class TestSplitEvaluator(Evaluator):
    """``test_accuracy`` and its 95% bootstrap interval (``test_accuracy_low`` / ``_high``).

    The figures are stored with every measured trial but never searched on; result tables
    show them for the front only.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self, task: Task, *, resamples: int = RESAMPLES, device: torch.device | None = None
    ) -> None:
        self.task = task
        self.resamples = resamples
        self.device = device
        self.accuracy = AccuracyEvaluator(task, split="test", column="test_accuracy")

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        outputs = predict(candidate.model, self.task.test, device=self.device)
        figures = self.accuracy.score(outputs)
        low, high = bootstrap_interval(
            outputs, self.task.test.targets, self.task.metric, resamples=self.resamples
        )
        if not (math.isfinite(low) and math.isfinite(high)):
            low = high = math.nan
        return {**figures, "test_accuracy_low": low, "test_accuracy_high": high}
