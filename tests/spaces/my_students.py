"""Student constructors a test study names in ``[space.custom_students]``."""

from __future__ import annotations

from torch import nn

from evaluators.tasks.digits import DigitsCNN


def tiny() -> nn.Module:
    """A very narrow, shallow digits CNN (one convolution, no hidden linear layer)."""
    return DigitsCNN(0.25, convs=1, hidden=False)


def renamed() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def not_a_model() -> int:
    return 3
