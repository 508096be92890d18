"""The evaluator contract: one measured aspect of a candidate."""

from __future__ import annotations

import abc
from typing import Protocol

from torch import nn


class Candidate(Protocol):
    """What evaluators measure: the compressed model and its packed artifact."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def artifact(self) -> bytes: ...


class Evaluator(abc.ABC):
    """Measures a candidate and returns named figures.

    An evaluator never changes the candidate's model (it may run it). Figures are plain
    floats so they go straight into Optuna's storage and the result tables.
    """

    @abc.abstractmethod
    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        """Measure ``candidate``; keys are result-table column names."""
