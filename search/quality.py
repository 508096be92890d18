"""The quality of a front as one number: hypervolume against a fixed normalised reference.

Objectives are first divided by the teacher baseline's own figures (accuracy, packed size,
latency of the uncompressed teacher, measured in the same study), so studies of different
tasks, machines and runs are on one scale. The reference point, in those units, is

- accuracy 0.9 of the teacher's (points below it add nothing),
- size 1.0 of the teacher's (a candidate must be smaller than the teacher to count),
- latency 2.0 of the teacher's (latency of compressed models varies little; a wide box keeps
  measurement noise from deciding whether a point counts).

The hypervolume is taken over the feasible Pareto front only (trials within budget). Larger
is better; a front with one point at the teacher's accuracy, 1/10 of its size and its latency
has ``(1 - 0.9) * (1 - 0.1) * (2 - 1) = 0.09``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from search.objective import OBJECTIVES
from search.pareto import hypervolume, non_dominated

#: Reference point per objective, as a ratio to the teacher baseline's figure.
REFERENCE = {"accuracy": 0.9, "size_bytes": 1.0, "latency_ms": 2.0}


def teacher_figures(trials: pd.DataFrame) -> dict[str, float] | None:
    """The completed teacher baseline's objective figures, or ``None``."""
    if trials.empty or "baseline" not in trials:
        return None
    rows = trials[(trials["baseline"] == "teacher") & (trials["state"] == "COMPLETE")]
    if rows.empty:
        return None
    row = rows.iloc[0]
    figures = {name: float(row[name]) for name, _ in OBJECTIVES}
    if not all(math.isfinite(v) and v > 0 for v in figures.values()):
        return None
    return figures


def normalised_front(trials: pd.DataFrame) -> np.ndarray:
    """The feasible front's objectives divided by the teacher's (rows: points)."""
    teacher = teacher_figures(trials)
    names = [name for name, _ in OBJECTIVES]
    if teacher is None:
        return np.empty((0, len(names)))
    front = trials[trials["front"].astype(bool)]
    return np.array(
        [[float(row[n]) / teacher[n] for n in names] for _, row in front.iterrows()]
    ).reshape(-1, len(names))


def front_hypervolume(trials: pd.DataFrame) -> float:
    """Hypervolume of the feasible front against :data:`REFERENCE` (NaN without a teacher)."""
    if teacher_figures(trials) is None:
        return math.nan
    points = normalised_front(trials)
    reference = [REFERENCE[name] for name, _ in OBJECTIVES]
    return hypervolume(points, reference, [d for _, d in OBJECTIVES]) if len(points) else 0.0


def hypervolume_curve(trials: pd.DataFrame) -> pd.DataFrame:
    """:func:`front_hypervolume` after each trial (by trial number): columns ``trial`` and
    ``hypervolume``; NaN throughout without a completed teacher baseline."""
    ordered = trials.sort_values("trial")
    teacher = teacher_figures(trials)
    if teacher is None:
        return pd.DataFrame({"trial": ordered["trial"].to_numpy(), "hypervolume": math.nan})
    names = [name for name, _ in OBJECTIVES]
    directions = [d for _, d in OBJECTIVES]
    reference = [REFERENCE[n] for n in names]
    ok = (ordered["state"] == "COMPLETE") & ordered["feasible"].astype(bool)
    points = np.column_stack([ordered[n].astype(float) / teacher[n] for n in names])
    usable = (ok & np.isfinite(points).all(axis=1)).to_numpy()
    front = np.zeros((0, len(names)))
    value, values = 0.0, []
    for i, good in enumerate(usable):
        if good:
            front = np.vstack([front, points[i]])
            front = front[non_dominated(front, directions)]
            value = hypervolume(front, reference, directions)
        values.append(value)
    return pd.DataFrame({"trial": ordered["trial"].to_numpy(), "hypervolume": values})
