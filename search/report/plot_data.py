"""What a report's plots show, apart from how they are drawn (as Optuna's visualization
computes ``_get_*_info`` before its plotly and matplotlib renderers draw it).

Everything here is plain data: DataFrames of the points in each group, limits, ranges and axis
names. :mod:`search.report.figures` (plotly) and :mod:`search.report.png` (matplotlib) draw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search.report.data import StudyReport

#: One colour per study (and the front's red first).
COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
#: The mark of front points that came from sensitivity warm starts.
WARM = "#9467bd"
#: Per cost axis: its label, the budget that limits it and its short name in titles.
AXES = {
    "size_bytes": ("packed size (bytes, log scale)", "max_size_bytes", "size"),
    "latency_ms": ("median latency (ms)", "max_latency_ms", "latency"),
    "bops": ("bit operations per example (BOPs, log scale)", "max_bops", "BOPs"),
}
#: Cost axes drawn on a log scale (bytes and BOPs: ratios matter).
LOG_AXES = ("size_bytes", "bops")


def completed(report: StudyReport) -> pd.DataFrame:
    """The study's complete trials (failed and pruned ones have no figures)."""
    return report.trials[report.trials["state"] == "COMPLETE"]


def baselines(done: pd.DataFrame) -> pd.DataFrame:
    """The baseline rows among ``done``."""
    return done[done["baseline"].astype(str) != ""]


def split_feasible(done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``done`` as (feasible, infeasible) rows."""
    ok = done["feasible"].astype(bool)
    return done[ok], done[~ok]


def accuracy_range(report: StudyReport) -> tuple[float, float] | None:
    """The accuracy axis (percent): 15 points below the best trial, or ``None`` before any."""
    done = completed(report)
    if done.empty:
        return None
    top = 100 * float(done["accuracy"].max())
    return max(0.0, top - 15), min(101.0, top + 1.5)


def x_extent(values: pd.Series, *, log: bool, include: float | None) -> tuple[float, float]:
    """The x-axis range in data units, wide enough for the points and the budget line."""
    vals = [float(v) for v in values.dropna() if v > 0] + ([include] if include else [])
    if not vals:
        return (1.0, 10.0)
    lo, hi = min(vals), max(vals)
    if log:
        return lo / 1.3, hi * 1.3
    pad = 0.06 * (hi - lo) or 0.06 * hi
    return lo - pad, hi + pad


def front_by(report: StudyReport, x: str) -> pd.DataFrame:
    """The front sorted by ``x``, with ``best``: the best accuracy up to each point."""
    front = report.front.sort_values(x)
    return front.assign(best=front["accuracy"].cummax())


@dataclass(frozen=True)
class AccuracyPlot:
    """Accuracy against one cost (``x``) for one study.

    Attributes:
        x: The cost column (``size_bytes``, ``latency_ms`` or ``bops``).
        label: The x axis's label.
        short: The cost's short name, for titles.
        log_x: Whether the x axis is logarithmic.
        done: Every complete trial.
        feasible: Complete trials within every budget.
        infeasible: Complete trials over a budget.
        front: The front, sorted by ``x``, with ``best`` (for the staircase).
        tested: Front points with test figures, with ``below`` and ``above``: the 95% interval
            around the test accuracy (fractions; 0 where unknown).
        knee: The knee's row (empty when none).
        warm: Front points that came from sensitivity warm starts (empty when none).
        baselines: Every complete baseline.
        budget: The budget on ``x``, or ``None``.
        accuracy_floor: The lowest accuracy within the drop budget, or ``None``.
        accuracy_drop: The drop budget (points) behind the floor, or ``None``.
        x_range: Data-unit extent of the points and the budget line.
        y_range: The accuracy axis (percent), or ``None`` before any complete trial.
    """

    x: str
    label: str
    short: str
    log_x: bool
    done: pd.DataFrame
    feasible: pd.DataFrame
    infeasible: pd.DataFrame
    front: pd.DataFrame
    tested: pd.DataFrame
    knee: pd.DataFrame
    warm: pd.DataFrame
    baselines: pd.DataFrame
    budget: float | None
    accuracy_floor: float | None
    accuracy_drop: float | None
    x_range: tuple[float, float]
    y_range: tuple[float, float] | None


def accuracy_plot(report: StudyReport, x: str) -> AccuracyPlot:
    """The points, limits and ranges of accuracy against ``x`` for one study."""
    label, budget_key, short = AXES[x]
    log = x in LOG_AXES
    done = completed(report)
    feasible, infeasible = split_feasible(done)
    front = front_by(report, x)
    tested = front[front["test_accuracy"].notna()]
    tested = tested.assign(
        below=(tested["test_accuracy"] - tested["test_accuracy_low"]).fillna(0),
        above=(tested["test_accuracy_high"] - tested["test_accuracy"]).fillna(0),
    )
    limit = report.budget(budget_key)
    floor = report.accuracy_floor
    return AccuracyPlot(
        x=x,
        label=label,
        short=short,
        log_x=log,
        done=done,
        feasible=feasible,
        infeasible=infeasible,
        front=front,
        tested=tested,
        knee=front[front["knee"].astype(bool)],
        warm=front[front["warm_start"].astype(str) != ""],
        baselines=baselines(done),
        budget=limit,
        accuracy_floor=floor,
        accuracy_drop=report.settings["budget"]["max_accuracy_drop"] if floor is not None else None,
        x_range=x_extent(done[x], log=log, include=limit),
        y_range=accuracy_range(report),
    )


@dataclass(frozen=True)
class FamilyPlot:
    """Accuracy against size: the front each technique family reaches alone, and the joint
    front (:mod:`search.families`).

    Attributes:
        fronts: Per family (joint last), its front sorted by size, with ``best`` (for the
            staircase).
        colours: Per family, its colour (joint in the front's red).
        hypervolumes: Per family, its hypervolume (NaN without a teacher).
        teacher: The teacher's row (empty when the study has none).
        x_range: Data-unit extent of the fronts' and the teacher's sizes.
        y_range: The accuracy axis (percent), or ``None`` before any complete trial.
    """

    fronts: dict[str, pd.DataFrame]
    colours: dict[str, str]
    hypervolumes: dict[str, float]
    teacher: pd.DataFrame
    x_range: tuple[float, float]
    y_range: tuple[float, float] | None


#: Each family's colour; joint takes the front's red.
FAMILY_COLOURS = {
    "quantization only": "#1f77b4",
    "pruning only": "#ff7f0e",
    "student only": "#2ca02c",
    "joint": COLOURS[0],
}


def family_plot(report: StudyReport) -> FamilyPlot:
    """The family fronts of one study, joint last (drawn on top)."""
    names = [n for n in report.family_fronts if n != "joint"] + ["joint"]
    fronts = {}
    for name in names:
        front = report.family_fronts.get(name, report.front.iloc[:0]).sort_values("size_bytes")
        fronts[name] = front.assign(best=front["accuracy"].cummax())
    hv = dict(zip(report.families["family"], report.families["hypervolume"], strict=True))
    done = completed(report)
    teacher = done[done["baseline"] == "teacher"]
    sizes = pd.concat([*(f["size_bytes"] for f in fronts.values()), teacher["size_bytes"]])
    return FamilyPlot(
        fronts=fronts,
        colours={n: FAMILY_COLOURS.get(n, "#7f7f7f") for n in names},
        hypervolumes={n: float(hv.get(n, math.nan)) for n in names},
        teacher=teacher,
        x_range=x_extent(sizes, log=True, include=None),
        y_range=accuracy_range(report),
    )


@dataclass(frozen=True)
class ObjectivesPlot:
    """Size (x) against latency (y), accuracy as colour, for one study.

    Attributes:
        feasible: Complete trials within every budget (``front`` marks the front's).
        infeasible: Complete trials over a budget.
        colour_range: The colour scale's accuracy range (percent): from the 5th percentile of
            the feasible trials to the best.
        size_budget: The size budget (bytes), or ``None``.
        latency_budget: The latency budget (ms), or ``None``.
        x_range: Data-unit extent of the sizes and the size budget.
    """

    feasible: pd.DataFrame
    infeasible: pd.DataFrame
    colour_range: tuple[float, float]
    size_budget: float | None
    latency_budget: float | None
    x_range: tuple[float, float]


def objectives_plot(report: StudyReport) -> ObjectivesPlot:
    """The points and limits of size against latency for one study."""
    done = completed(report)
    feasible, infeasible = split_feasible(done)
    acc = 100 * feasible["accuracy"]
    lo = float(np.nanpercentile(acc, 5)) if len(acc) else 0.0
    hi = float(acc.max()) if len(acc) else 100.0
    size_budget = report.budget("max_size_bytes")
    return ObjectivesPlot(
        feasible=feasible,
        infeasible=infeasible,
        colour_range=(lo, hi),
        size_budget=size_budget,
        latency_budget=report.budget("max_latency_ms"),
        x_range=x_extent(done["size_bytes"], log=True, include=size_budget),
    )


@dataclass(frozen=True)
class ParallelPlot:
    """Parallel coordinates of every complete trial.

    Attributes:
        group: Per trial: 2 on the front, 1 feasible, 0 over budget.
        dimensions: One axis each: ``label``, ``values`` and, for log and categorical axes,
            ``tickvals`` and ``ticktext``. An axis the study optimises says "(objective)".
    """

    group: np.ndarray
    dimensions: list[dict[str, object]]


def parallel_plot(report: StudyReport) -> ParallelPlot:
    """Accuracy, size (log), latency, BOPs (log, when measured) and the student per trial."""
    done = completed(report).copy()
    group = np.where(done["front"].astype(bool), 2, np.where(done["feasible"].astype(bool), 1, 0))
    size_log = np.log10(done["size_bytes"].astype(float).clip(lower=1))
    ticks = [
        t for t in range(int(size_log.min()) if len(done) else 0, 9) if t <= size_log.max() + 1
    ]
    dims: list[dict[str, object]] = [
        {"label": "val accuracy %", "values": 100 * done["accuracy"]},
        {
            "label": "size (bytes)",
            "values": size_log,
            "tickvals": ticks,
            "ticktext": [f"{10**t:,.0f}" for t in ticks],
        },
        {"label": "latency (ms)", "values": done["latency_ms"]},
    ]
    if "bops" in done and done["bops"].notna().any():
        bops_log = np.log10(done["bops"].astype(float).fillna(1).clip(lower=1))
        bops_ticks = list(range(int(bops_log.min()), math.ceil(bops_log.max()) + 1))
        dims.append(
            {
                "label": "BOPs",
                "values": bops_log,
                "tickvals": bops_ticks,
                "ticktext": [f"1e{t}" for t in bops_ticks],
            }
        )
    names = {"accuracy": "val accuracy %", "size_bytes": "size (bytes)"}
    names |= {"latency_ms": "latency (ms)", "bops": "BOPs"}
    marked = {names[n] for n in report.objectives}
    for dim in dims:
        if dim["label"] in marked:
            dim["label"] = f"{dim['label']} (objective)"
    students = sorted(done["student"].astype(str).unique())
    if len(students) > 1:
        dims.append(
            {
                "label": "student",
                "values": [students.index(v) for v in done["student"].astype(str)],
                "tickvals": list(range(len(students))),
                "ticktext": students,
            }
        )
    return ParallelPlot(group, dims)


def front_students(report: StudyReport) -> dict[int, str]:
    """Each front trial's student, for labelling the policy rows."""
    return dict(zip(report.front["trial"], report.front["student"], strict=True))
