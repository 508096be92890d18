"""Task metric (accuracy, fidelity) of a candidate on one data split."""

from __future__ import annotations

import math

import torch

from evaluators._base import Candidate, Evaluator
from spaces.task import Split, Task
from spaces.training import predict


class NonFiniteOutput(RuntimeError):
    """The candidate produced NaN or infinite outputs."""


class AccuracyEvaluator(Evaluator):
    """The task's metric on a split (validation while searching, test for the report).

    Args:
        task: The task whose metric and data are used.
        split: ``"val"`` or ``"test"``; the training split is never used to score.
        column: Result column name (``"accuracy"`` by default). The task's extra metrics
            are reported too, prefixed like the column (``test_nn_agreement`` beside
            ``test_accuracy``).
        device: Where the candidate's forward passes run (it is moved there and back; see
            :mod:`spaces.devices`); ``None``: where the candidate is.
    """

    def __init__(
        self,
        task: Task,
        *,
        split: str = "val",
        column: str = "accuracy",
        device: torch.device | None = None,
    ) -> None:
        if split not in ("val", "test"):
            raise ValueError(f"'split' must be 'val' or 'test'. Got {split!r} instead.")
        self.task = task
        self.split: Split = getattr(task, split)
        self.column = column
        self.device = device

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        outputs = predict(candidate.model, self.split, device=self.device)
        return self.score(outputs)

    def score(self, outputs: torch.Tensor) -> dict[str, float]:
        """The figures of already computed ``outputs`` on this split."""
        if not bool(outputs.isfinite().all()):
            raise NonFiniteOutput("the compressed model's outputs contain NaN or inf")
        value = self.task.metric(outputs, self.split.targets)
        if not math.isfinite(value):
            raise NonFiniteOutput(f"the metric is {value}")
        prefix = self.column[: -len("accuracy")] if self.column.endswith("accuracy") else ""
        extras = {
            prefix + name: metric(outputs, self.split.targets)
            for name, metric in self.task.extra_metrics.items()
        }
        return {self.column: value, **extras}
