"""Deployment budgets: one type for ``run`` (the study's ``[budget]``), ``select`` and ``export``.

A budget is a constraint, not an objective: in a study each limit becomes an Optuna constraint
whose value is <= 0 when the candidate is within it (``set_constraint``); ``select`` keeps the
front points that meet every limit.

Every limit is described once, in :data:`LIMITS`: the :class:`Budget` field, the study-file key,
the command-line flag, the result column it limits, how its values are shown and which values
are allowed. :class:`Budget` validates itself from that table; a bad value gives one message
shape that names the study-file key (``budget.max_bops``) or, for a budget built with
:meth:`Budget.from_flags`, the flag (``--max-bops``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """How one budget is named, checked and shown.

    Attributes:
        field: The :class:`Budget` attribute.
        key: The study-file key under ``[budget]``.
        flag: The command-line flag of ``select`` and ``export``.
        column: The front-table column it limits (``drop_points`` for the accuracy drop).
        label: A short name for explanations ("size", "latency", ...).
        template: Formats a value with its unit.
        zero_ok: Whether 0 is allowed (a drop of 0 points is; a size of 0 bytes is not).
        excess_floor: When ranking points that miss the budgets, the excess over this limit is
            divided by ``max(limit, excess_floor)``; 1 point for the drop, so that a budget of
            0 points does not divide by zero.
    """

    field: str
    key: str
    flag: str
    column: str
    label: str
    template: str
    zero_ok: bool = False
    excess_floor: float = 0.0

    @property
    def rule(self) -> str:
        """The allowed range, as error messages state it."""
        return ">= 0" if self.zero_ok else "> 0"

    @property
    def constraint(self) -> str:
        """Its constraint's name in a study (``constraint.<name>`` in trials.csv): the figure it
        limits, ``accuracy_drop`` for the drop."""
        return "accuracy_drop" if self.column == "drop_points" else self.column

    def format(self, value: float) -> str:
        """``value`` with its unit, e.g. ``"20,000 B"``."""
        return self.template.format(value)

    def excess_scale(self, limit: float) -> float:
        """What the excess over ``limit`` is divided by to compare it with other budgets'."""
        return max(limit, self.excess_floor)

    def allows(self, value: object) -> bool:
        """Whether ``value`` is a valid limit: a finite number in :attr:`rule`'s range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return math.isfinite(value) and (value >= 0 if self.zero_ok else value > 0)


#: Every budget, in the order explanations list them.
LIMITS: tuple[Limit, ...] = (
    # field, study-file key, flag, result column, label, format with unit
    Limit("max_size_bytes", "max_size", "--max-size", "size_bytes", "size", "{:,.0f} B"),
    Limit(
        "max_latency_ms", "max_latency_ms", "--max-latency", "latency_ms", "latency", "{:.3f} ms"
    ),
    Limit(
        "max_accuracy_drop",
        "max_accuracy_drop",
        "--max-drop",
        "drop_points",
        "drop",
        "{:.2f} points",
        zero_ok=True,
        excess_floor=1.0,
    ),
    Limit("max_bops", "max_bops", "--max-bops", "bops", "BOPs", "{:.4g} BOPs"),
)

#: The limits by :class:`Budget` field name.
LIMIT_BY_FIELD: dict[str, Limit] = {limit.field: limit for limit in LIMITS}


class BudgetError(ValueError):
    """A budget value outside its allowed range.

    Attributes:
        limit: The budget it is for.
        value: The value given.
        name: How the message names it: ``budget.<key>`` or the flag.
    """

    def __init__(self, limit: Limit, value: object, name: str) -> None:
        super().__init__(f"'{name}' must be a number {limit.rule}. Got {value!r} instead.")
        self.limit = limit
        self.value = value
        self.name = name

    def named(self, name: str) -> BudgetError:
        """The same error, naming the value as ``name`` (a flag instead of the key)."""
        return BudgetError(self.limit, self.value, name)


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

    Raises:
        BudgetError: a limit is not a finite number in its range (see :data:`LIMITS`); the
            message names the study-file key ``budget.<key>``.
    """

    max_size_bytes: int | None = None
    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = None
    max_bops: float | None = None

    def __post_init__(self) -> None:
        for limit in LIMITS:
            value = getattr(self, limit.field)
            if value is not None and not limit.allows(value):
                raise BudgetError(limit, value, f"budget.{limit.key}")

    @classmethod
    def from_flags(
        cls,
        *,
        max_size_bytes: int | None = None,
        max_latency_ms: float | None = None,
        max_accuracy_drop: float | None = None,
        max_bops: float | None = None,
    ) -> Budget:
        """A budget from command-line values; an error names the flag (``--max-size``).

        Raises:
            BudgetError: as the constructor, naming the flag.
        """
        try:
            return cls(
                max_size_bytes=max_size_bytes,
                max_latency_ms=max_latency_ms,
                max_accuracy_drop=max_accuracy_drop,
                max_bops=max_bops,
            )
        except BudgetError as exc:
            raise exc.named(exc.limit.flag) from None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return bool(self.items())

    def items(self) -> list[tuple[Limit, float]]:
        """The limits that are set, with their values, in :data:`LIMITS` order."""
        return [
            (limit, float(getattr(self, limit.field)))
            for limit in LIMITS
            if getattr(self, limit.field) is not None
        ]

    def describe(self) -> str:
        """The limits that are set, e.g. ``"size <= 20,000 B, drop <= 1.00 points"``."""
        parts = [f"{limit.label} <= {limit.format(value)}" for limit, value in self.items()]
        return ", ".join(parts) if parts else "no budget"

    def accuracy_floor(self, reference_accuracy: float) -> float | None:
        """The lowest accuracy within ``max_accuracy_drop`` of ``reference_accuracy`` (``None``
        without that limit): :meth:`constraints` accepts exactly the accuracies at or above it."""
        if self.max_accuracy_drop is None:
            return None
        return reference_accuracy - self.max_accuracy_drop / 100.0

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
