"""A suggested knee point of a Pareto front: the best compromise between objectives.

Method (a compromise-programming knee): each objective is put on a common scale over the
front's own points (optionally through ``log10`` first, for figures such as bytes whose
ratios matter more than their differences), min-max normalised to ``[0, 1]`` with 0 the best
value, and the knee is the point nearest to the ideal point (0, ..., 0) in Euclidean
distance. An objective that is the same for every point does not count. Ties go to the
earlier row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalised(
    points: np.ndarray, directions: Sequence[str], *, log_scale: Sequence[bool] | None = None
) -> np.ndarray:
    """Points on ``[0, 1]`` per objective, 0 best (see the module docstring)."""
    pts = np.asarray(points, dtype=float).copy()
    if pts.ndim != 2 or pts.shape[1] != len(directions):
        raise ValueError(
            f"'points' must have one column per direction ({len(directions)}). "
            f"Got shape {pts.shape} instead."
        )
    logs = list(log_scale) if log_scale is not None else [False] * len(directions)
    for j, (direction, use_log) in enumerate(zip(directions, logs, strict=True)):
        col = np.log10(np.maximum(pts[:, j], 1e-12)) if use_log else pts[:, j]
        lo, hi = col.min(), col.max()
        scaled = (col - lo) / (hi - lo) if hi > lo else np.zeros_like(col)
        pts[:, j] = 1.0 - scaled if direction == "maximize" else scaled
    return pts


def knee_index(
    points: np.ndarray, directions: Sequence[str], *, log_scale: Sequence[bool] | None = None
) -> int:
    """Row of ``points`` (a Pareto front) nearest the ideal point after normalisation."""
    if len(points) == 0:
        raise ValueError("'points' must hold at least one point. Got an empty front instead.")
    dist = np.linalg.norm(normalised(points, directions, log_scale=log_scale), axis=1)
    return int(np.argmin(dist))
