"""Comparing ONNX Runtime's quantizations (:mod:`search.bench.ort_baselines`) with a front.

:func:`time_side_by_side` times ONNX files and torch models together, as
:func:`evaluators.latency.time_interleaved` times a study's front and baselines at the end of a
run (round-robin rounds in a rotating order, a fresh build of each per round, the median of its
round medians, quiet timing); :func:`dominators` says which front points dominate a baseline;
:func:`plot_points` draws them.
"""

from __future__ import annotations

import functools
import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluators.latency import (
    ROUNDS,
    InterleavedLatency,
    LatencySettings,
    deployed,
    gate,
    rebuilt,
    time_run,
    timing,
)
from evaluators.latency.interleaved import round_order
from search.bench.ort_baselines import OnnxRun


def time_side_by_side(
    entries: Mapping[str, nn.Module | bytes],
    batch: tuple[torch.Tensor, ...],
    settings: LatencySettings,
    *,
    rounds: int = ROUNDS,
    quiet: bool = True,
) -> dict[str, InterleavedLatency]:
    """Time torch models (in ``settings.runtime``, as a study deploys them) and ONNX files
    (``bytes``, in ONNX Runtime with that runtime's session options) together, as
    :func:`evaluators.latency.time_interleaved` times a front: ``rounds`` rounds in a rotating
    order, a fresh build (session) of each per round, the median of its round medians."""
    if rounds < 1:
        raise ValueError(f"'rounds' must be an int >= 1. Got {rounds!r} instead.")
    names = list(entries)
    runs: dict[str, Any] = {}
    medians: dict[str, list[float]] = {name: [] for name in names}
    with timing():
        for r in range(rounds):
            for name in round_order(names, r):
                entry = entries[name]
                if isinstance(entry, bytes):
                    runs[name] = OnnxRun(entry, settings.threads)
                elif name not in runs:
                    runs[name] = deployed(entry, settings)
                else:
                    runs[name] = rebuilt(
                        runs[name], settings.runtime, entry, settings.threads, batch
                    )
                medians[name].append(_round_median(runs[name], batch, settings, quiet))
    out = {}
    for name, values in medians.items():
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median if median > 0 else 0.0
        out[name] = InterleavedLatency(median, spread, tuple(values))
    return out


def _round_median(
    run: Any, batch: tuple[torch.Tensor, ...], settings: LatencySettings, quiet: bool
) -> float:
    torch.set_num_threads(settings.threads)
    with torch.inference_mode():
        if quiet:
            time_run(run, batch, warmup=settings.warmup, repeats=0)
            seconds = gate().time_blocks(functools.partial(run, *batch), settings.repeats)
            return statistics.median(seconds) * 1e3
        return statistics.median(
            time_run(run, batch, warmup=settings.warmup, repeats=settings.repeats)
        )


@dataclass(frozen=True)
class Point:
    """A model on the plots: validation accuracy, bytes and side-by-side latency."""

    name: str
    accuracy: float
    size_bytes: float
    latency_ms: float


#: What dominance compares: accuracy is maximised, the others minimised
OBJECTIVES = ("accuracy", "size_bytes", "latency_ms")


def dominators(
    point: Point, front: Sequence[Point], objectives: Sequence[str] = OBJECTIVES
) -> list[Point]:
    """Front points dominating ``point`` on ``objectives`` (default all three): accuracy >=,
    bytes <=, latency <= (those named), not equal on all of them."""
    unknown = set(objectives) - set(OBJECTIVES)
    if unknown or not objectives:
        raise ValueError(f"'objectives' must be a subset of {list(OBJECTIVES)}. Got {objectives}.")

    def key(p: Point) -> tuple[float, ...]:  # larger is better on every figure
        return tuple(p.accuracy if o == "accuracy" else -getattr(p, o) for o in objectives)

    mine = key(point)
    return [
        p
        for p in front
        if all(a >= b for a, b in zip(key(p), mine, strict=True)) and key(p) != mine
    ]


def dominance_line(
    point: Point,
    front: Sequence[Point],
    what: str = "accuracy",
    objectives: Sequence[str] = OBJECTIVES,
) -> str:
    """One Markdown line: whether the front dominates ``point`` on ``objectives``, and which
    front points do (smallest first)."""
    found = dominators(point, front, objectives)
    figures = f"{what} {point.accuracy:.4f}, {point.size_bytes:,.0f} B, {point.latency_ms:.2f} ms"
    on = "" if tuple(objectives) == OBJECTIVES else f" on {' and '.join(objectives)} only"
    if not found:
        return f"- {point.name} ({figures}): **not dominated**{on} by any front point."
    best = ", ".join(
        f"{p.name} ({p.accuracy:.4f}, {p.size_bytes:,.0f} B, {p.latency_ms:.2f} ms)"
        for p in sorted(found, key=lambda p: p.size_bytes)
    )
    return f"- {point.name} ({figures}): **dominated**{on} by {best}."


def plot_points(
    front: Sequence[Point],
    baselines: Sequence[Point],
    path: Path,
    *,
    x: str,
    ylabel: str = "accuracy (validation)",
    title: str = "",
) -> Path:
    """Accuracy against ``x`` (``"size_bytes"`` or ``"latency_ms"``): the front's points,
    each baseline as a labelled marker; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in ("size_bytes", "latency_ms"):
        raise ValueError(f"'x' must be 'size_bytes' or 'latency_ms'. Got {x!r} instead.")
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=110)
    # the front is over accuracy, size and latency: seen against one of them it is no curve
    ax.scatter(
        [getattr(p, x) for p in front],
        [p.accuracy for p in front],
        marker="o",
        color="tab:blue",
        label="frontier front (points)",
    )
    styles = list(
        zip("s^DvP", ("tab:gray", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=True)
    )
    for b, (marker, color) in zip(baselines, itertools.cycle(styles), strict=False):
        ax.scatter(getattr(b, x), b.accuracy, marker=marker, color=color, s=70, label=b.name)
    if x == "size_bytes":
        ax.set_xscale("log")
    ax.set_xlabel(
        "bytes (front: packed artifact; ONNX baselines: .onnx file)"
        if x == "size_bytes"
        else "latency ms (timed side by side)"
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
