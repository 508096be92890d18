"""Budgets as constraints: value <= 0 means within budget (Optuna's ``set_constraint``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Deployment limits. ``None`` means no limit.

    Attributes:
        max_size_bytes: Largest packed artifact, in bytes.
        max_latency_ms: Largest median latency, in milliseconds.
        max_accuracy_drop: Largest drop of the metric below the teacher's, in points
            (1 point = 0.01 of the metric, one percentage point of accuracy).
        max_bops: Largest bit operations per example (MACs x weight bits x activation
            bits, see :mod:`evaluators.cost`).
    """

    max_size_bytes: int | None = None
    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = None
    max_bops: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_size_bytes", "max_latency_ms", "max_accuracy_drop", "max_bops"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"'budget.{name}' must be a number. Got {value!r} instead.")
            zero_ok = name == "max_accuracy_drop"
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                raise ValueError(f"'budget.{name}' must be > 0. Got {value!r} instead.")

    @property
    def active(self) -> bool:
        limits = (self.max_size_bytes, self.max_latency_ms, self.max_accuracy_drop, self.max_bops)
        return any(v is not None for v in limits)

    def constraints(
        self, figures: Mapping[str, float], reference_accuracy: float
    ) -> dict[str, float]:
        """Constraint values for the figures present; each is <= 0 when within budget.

        A figure that was not measured yields no constraint (the cheap size check runs
        before latency exists, for example).
        """
        out: dict[str, float] = {}
        if self.max_size_bytes is not None and "size_bytes" in figures:
            out["size_bytes"] = figures["size_bytes"] - self.max_size_bytes
        if self.max_latency_ms is not None and "latency_ms" in figures:
            out["latency_ms"] = figures["latency_ms"] - self.max_latency_ms
        if self.max_bops is not None and "bops" in figures:
            out["bops"] = figures["bops"] - self.max_bops
        if self.max_accuracy_drop is not None and "accuracy" in figures:
            drop = 100.0 * (reference_accuracy - figures["accuracy"])
            out["accuracy_drop"] = drop - self.max_accuracy_drop
        return out
