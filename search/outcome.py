"""The outcome record of one trial: what a candidate measured, or why it has no figures.

One record for every way a trial ends (complete, pruned, failed), made by
:func:`search.trial.run_trial` in whichever process evaluated the candidate, carried as JSON
from a Ray worker to the driver, and told to Optuna by :func:`search.trial.tell`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: How a trial ended.
COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
STATES = (COMPLETE, PRUNED, FAILED)


@dataclass(frozen=True)
class TrialOutcome:
    """What one candidate measured: figures (result columns) and budget constraints.

    Attributes:
        figures: Measurements, by result column (``accuracy``, ``size_bytes``, ...).
        constraints: Budget constraints (``<= 0``: within budget), by budget name.
        objective_values: Values told to the sampler instead of the figures', by objective
            name. A candidate stopped by the cheap checks has no accuracy or latency: its
            figures say NaN, the sampler gets placeholders.
        skipped: Why the candidate was not built (the cheap checks stopped it), else empty.
        state: ``"complete"``, ``"pruned"`` (stopped early, figures at the rung it reached)
            or ``"failed"`` (no figures; ``reason`` says why).
        reason: Why the trial was pruned or failed, else empty.
        worker: ``host:pid`` of the process that evaluated it, when not the driver.
    """

    figures: dict[str, float]
    constraints: dict[str, float] = field(default_factory=dict)
    objective_values: Mapping[str, float] | None = None
    skipped: str = ""
    state: str = COMPLETE
    reason: str = ""
    worker: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"'state' must be one of {list(STATES)}. Got {self.state!r} instead.")

    @classmethod
    def failed(cls, reason: str, *, worker: str = "") -> TrialOutcome:
        """A candidate that raised, diverged or could not be evaluated."""
        return cls({}, state=FAILED, reason=reason, worker=worker)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def values_for(self, objectives: Sequence[str]) -> list[float]:
        """The values told to the sampler for ``objectives`` (a study's, in its order)."""
        source = self.objective_values if self.objective_values is not None else self.figures
        return [float(source[name]) for name in objectives]

    def checked(self, objectives: Sequence[str]) -> TrialOutcome:
        """This outcome, or a failed one when a complete outcome's objective values are not
        finite (the sampler cannot take NaN)."""
        if self.state != COMPLETE:
            return self
        try:
            values = self.values_for(objectives)
        except KeyError as exc:
            return TrialOutcome.failed(f"KeyError: objective {exc} was not measured")
        if all(math.isfinite(v) for v in values):
            return self
        return TrialOutcome.failed(
            f"FloatingPointError: non-finite objective values {values}", worker=self.worker
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data (Ray carries it from the worker to the driver)."""
        return {
            "figures": self.figures,
            "constraints": self.constraints,
            "objective_values": (
                None if self.objective_values is None else dict(self.objective_values)
            ),
            "skipped": self.skipped,
            "state": self.state,
            "reason": self.reason,
            "worker": self.worker,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialOutcome:
        """Inverse of :meth:`to_json`."""
        values = data.get("objective_values")
        return cls(
            figures={str(k): float(v) for k, v in data.get("figures", {}).items()},
            constraints={str(k): float(v) for k, v in data.get("constraints", {}).items()},
            objective_values=None if values is None else {k: float(v) for k, v in values.items()},
            skipped=str(data.get("skipped", "")),
            state=str(data.get("state", COMPLETE)),
            reason=str(data.get("reason", "")),
            worker=str(data.get("worker", "")),
        )
