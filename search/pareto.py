"""Pareto fronts and hypervolume over result tables (any number of objectives)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_minimization(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(points, dtype=float) * signs


def non_dominated(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``points`` that no other row dominates.

    Row ``a`` dominates ``b`` when it is at least as good in every objective and strictly
    better in one. Exact duplicates do not dominate each other, so both stay on the front.
    """
    pts = _as_minimization(points, directions)
    n = len(pts)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        le = np.all(pts <= pts[i], axis=1)
        lt = np.any(pts < pts[i], axis=1)
        if np.any(le & lt):
            keep[i] = False
    return keep


def hypervolume(points: np.ndarray, reference: Sequence[float], directions: Sequence[str]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (larger is better).

    Objectives are turned into minimisation; points not strictly better than the reference
    in every objective contribute nothing. Exact for any dimension (recursive slicing), fast
    enough for the few hundred points a front holds.
    """
    pts = _as_minimization(np.atleast_2d(points), directions)
    ref = _as_minimization(np.asarray([reference]), directions)[0]
    pts = pts[np.all(pts < ref, axis=1)] if len(pts) else pts
    if len(pts) == 0:
        return 0.0
    return float(_hv(pts, ref))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    pts = pts[np.argsort(pts[:, 0])]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, 0] if i + 1 < len(pts) else ref[0]
        width = upper - pts[i, 0]
        if width <= 0:
            continue
        sub = pts[: i + 1, 1:]
        sub = sub[non_dominated(sub, ["minimize"] * sub.shape[1])]
        total += width * _hv(sub, ref[1:])
    return total
