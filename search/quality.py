"""The quality of a front as one number: hypervolume against a fixed normalised reference.

The hypervolume is taken over the study's own objectives (``[study] objectives``; accuracy,
size and latency by default). Each is first divided by the teacher baseline's own figure
(accuracy, packed size, latency, BOPs of the uncompressed teacher, measured in the same
study), so studies of different tasks, machines and runs are on one scale. The reference
point, in those units, is

- accuracy 0.9 of the teacher's (points below it add nothing),
- size 1.0 of the teacher's (a candidate must be smaller than the teacher to count),
- latency 2.0 of the teacher's (latency of compressed models varies little; a wide box keeps
  measurement noise from deciding whether a point counts),
- BOPs 1.0 of the teacher's (as size: a candidate must do fewer bit operations than the
  float teacher to count; BOPs is exact, so no slack is needed).

The hypervolume is taken over the feasible Pareto front only (trials within budget). Larger
is better; a front with one point at the teacher's accuracy, 1/10 of its size and its latency
has ``(1 - 0.9) * (1 - 0.1) * (2 - 1) = 0.09``. Hypervolumes over different objectives are
different quantities: compare studies with the same objectives only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from search.objective_names import DEFAULT_OBJECTIVES, directions
from search.pareto import hypervolume, non_dominated

#: Reference point per objective, as a ratio to the teacher baseline's figure.
REFERENCE = {"accuracy": 0.9, "size_bytes": 1.0, "latency_ms": 2.0, "bops": 1.0}


def reference_text(objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> str:
    """The reference point of ``objectives`` in words, e.g. ``accuracy 0.9, size_bytes 1``."""
    return ", ".join(f"{n} {REFERENCE[n]:g}" for n in objectives)


def teacher_figures(
    trials: pd.DataFrame, objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> dict[str, float] | None:
    """The completed teacher baseline's figures of ``objectives``, or ``None``."""
    if trials.empty or "baseline" not in trials:
        return None
    rows = trials[(trials["baseline"] == "teacher") & (trials["state"] == "COMPLETE")]
    if rows.empty:
        return None
    row = rows.iloc[0]
    figures = {name: float(row[name]) for name in objectives}
    if not all(math.isfinite(v) and v > 0 for v in figures.values()):
        return None
    return figures


def normalised_front(
    trials: pd.DataFrame, objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> np.ndarray:
    """The feasible front's objectives divided by the teacher's (rows: points)."""
    teacher = teacher_figures(trials, objectives)
    names = list(objectives)
    if teacher is None:
        return np.empty((0, len(names)))
    front = trials[trials["front"].astype(bool)]
    return np.array(
        [[float(row[n]) / teacher[n] for n in names] for _, row in front.iterrows()]
    ).reshape(-1, len(names))


def front_hypervolume(
    trials: pd.DataFrame, objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> float:
    """Hypervolume of the feasible front (``front`` column, computed over the same
    ``objectives``) against :data:`REFERENCE`; NaN without a teacher."""
    if teacher_figures(trials, objectives) is None:
        return math.nan
    points = normalised_front(trials, objectives)
    reference = [REFERENCE[name] for name in objectives]
    return hypervolume(points, reference, directions(objectives)) if len(points) else 0.0


def hypervolume_curve(
    trials: pd.DataFrame, objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> pd.DataFrame:
    """:func:`front_hypervolume` after each trial (by trial number): columns ``trial`` and
    ``hypervolume``; NaN throughout without a completed teacher baseline."""
    ordered = trials.sort_values("trial")
    teacher = teacher_figures(trials, objectives)
    if teacher is None:
        return pd.DataFrame({"trial": ordered["trial"].to_numpy(), "hypervolume": math.nan})
    names = list(objectives)
    signs = directions(names)
    reference = [REFERENCE[n] for n in names]
    ok = (ordered["state"] == "COMPLETE") & ordered["feasible"].astype(bool)
    points = np.column_stack([ordered[n].astype(float) / teacher[n] for n in names])
    usable = (ok & np.isfinite(points).all(axis=1)).to_numpy()
    front = np.zeros((0, len(names)))
    value, values = 0.0, []
    for i, good in enumerate(usable):
        if good:
            front = np.vstack([front, points[i]])
            front = front[non_dominated(front, signs)]
            value = hypervolume(front, reference, signs)
        values.append(value)
    return pd.DataFrame({"trial": ordered["trial"].to_numpy(), "hypervolume": values})
