"""Interactive plotly figures of a report (SVG only: no WebGL, so they draw everywhere).

Each figure draws what :mod:`search.report.plot_data` computed; :func:`_trace` builds every
scatter trace from a group of rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.report.data import StudyReport
from search.report.plot_data import (
    AXES,
    COLOURS,
    LOG_AXES,
    WARM,
    accuracy_plot,
    front_by,
    front_students,
    objectives_plot,
    parallel_plot,
)
from search.report.tables import bits_label, fmt_interval, fmt_pct

_GREY = "#b0b0b0"
_FEASIBLE = "#7f9fbf"
_POSITIONS = ("top center", "bottom center", "middle right")
#: Columns that hold fractions, drawn in percent.
_PERCENT = ("accuracy", "best", "test_accuracy")
_LAYOUT = {
    "template": "plotly_white",
    "height": 460,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.18},
}


def _hover(df: pd.DataFrame) -> list[str]:
    out = []
    for _, r in df.iterrows():
        text = (
            f"trial {int(r['trial'])}<br>val acc {fmt_pct(r['accuracy'])}"
            f"<br>size {r['size_bytes']:,.0f} B<br>latency {r['latency_ms']:.3f} ms"
        )
        if "bops" in r and pd.notna(r["bops"]):
            text += f"<br>BOPs {r['bops']:.3g}"
        if "test_accuracy" in r and pd.notna(r["test_accuracy"]):
            interval = fmt_interval(r["test_accuracy_low"], r["test_accuracy_high"])
            text += f"<br>test acc {fmt_pct(r['test_accuracy'])} {interval}"
        if "summary" in r and isinstance(r["summary"], str):
            text += f"<br>{r['summary']}"
        elif "student" in r:
            text += f"<br>{r['student']}"
        if r.get("techniques"):
            text += f"<br>techniques: {r['techniques']}"
        if r.get("baseline"):
            text += f"<br>baseline: {r['baseline']}"
        if isinstance(r.get("warm_start"), str) and r["warm_start"]:
            text += f"<br>warm start: {r['warm_start']}"
        out.append(text)
    return out


def _trace(
    rows: pd.DataFrame, x: str, y: str = "accuracy", *, hover: str | None = "text", **style: Any
) -> go.Scatter:
    """One scatter trace of ``rows``: column ``x`` against ``y`` (accuracies in percent).

    ``hover="text"`` shows each row's figures on hover, ``"skip"`` nothing (lines) and
    ``None`` plotly's default. ``style`` holds the trace's other properties (``name``,
    ``marker``, ``mode``: markers unless it says otherwise, ...).
    """
    values = 100 * rows[y] if y in _PERCENT else rows[y]
    style.setdefault("mode", "markers")
    if hover == "text":
        style["hovertext"] = _hover(rows)
    if hover is not None:
        style["hoverinfo"] = hover
    return go.Scatter(x=rows[x], y=values, **style)


def _staircase(front: pd.DataFrame, x: str, colour: str, **style: Any) -> go.Scatter:
    """The best accuracy up to each cost, as a step line (``front`` from ``front_by``)."""
    line = {"shape": "hv", "color": colour, "width": 1.5}
    return _trace(front, x, "best", hover="skip", mode="lines", line=line, **style)


def _layout(fig: go.Figure, title: str, x: str) -> go.Figure:
    fig.update_layout(title=title, **_LAYOUT, hovermode="closest")
    fig.update_xaxes(title=AXES[x][0], type="log" if x in LOG_AXES else "linear")
    fig.update_yaxes(title="accuracy (%)")
    return fig


def accuracy_vs(report: StudyReport, x: str) -> go.Figure:
    """Accuracy against ``x`` (size, latency or BOPs) for one study: every trial, the front,
    the test figures of the front, baselines, the knee, budgets as lines and over-budget
    areas."""
    p = accuracy_plot(report, x)
    fig = go.Figure()
    grey = {"color": _GREY, "size": 6, "opacity": 0.45}
    fig.add_trace(_trace(p.infeasible, x, name="infeasible (over budget)", marker=grey))
    blue = {"color": _FEASIBLE, "size": 7}
    fig.add_trace(_trace(p.feasible, x, name="feasible", marker=blue))
    if len(p.front):
        best = f"front (best accuracy up to this {p.short})"
        fig.add_trace(_staircase(p.front, x, COLOURS[0], name=best))
        red = {"color": COLOURS[0], "size": 9}
        fig.add_trace(_trace(p.front, x, name="Pareto front (validation)", marker=red))
        if len(p.tested):
            bars = {"type": "data", "symmetric": False, "thickness": 1, "width": 3}
            bars |= {"array": 100 * p.tested["above"], "arrayminus": 100 * p.tested["below"]}
            ring = {"color": "#ff7f0e", "size": 8, "symbol": "circle-open"}
            name = "front on the test split (95% CI)"
            fig.add_trace(
                _trace(p.tested, x, "test_accuracy", name=name, marker=ring, error_y=bars)
            )
        if len(p.warm):
            tri = {"symbol": "triangle-up-open", "size": 15, "color": WARM, "line": {"width": 2}}
            fig.add_trace(_trace(p.warm, x, name="front point from a warm start", marker=tri))
        diamond = {"symbol": "diamond-open", "size": 16, "color": "black", "line": {"width": 2}}
        knee: dict[str, Any] = {"name": "suggested knee", "mode": "markers+text"}
        knee |= {"marker": diamond, "text": ["knee"] * len(p.knee), "textposition": "top left"}
        fig.add_trace(_trace(p.knee, x, **knee))
    edge = {"color": "black", "width": 1}
    star = {"symbol": "star", "size": 14, "color": "#2ca02c", "line": edge}
    positions = [_POSITIONS[i % len(_POSITIONS)] for i in range(len(p.baselines))]
    fig.add_trace(
        _trace(
            p.baselines,
            x,
            name="baselines",
            mode="markers+text",
            marker=star,
            text=p.baselines["baseline"].astype(str),
            textposition=positions,
        )
    )
    _set_x_range(fig, *p.x_range, log=p.log_x)
    if p.budget is not None:
        label = _budget_label(x, p.budget)
        _vertical_budget(fig, p.budget, p.x_range[1], log=p.log_x, label=label, shade=True)
    if p.accuracy_floor is not None:
        _accuracy_floor(fig, p.accuracy_floor, p.accuracy_drop)
    fig = _layout(fig, f"{report.name}: accuracy against {p.short}", x)
    fig.update_yaxes(range=list(p.y_range) if p.y_range is not None else [0, 100])
    return fig


def _set_x_range(fig: go.Figure, lo: float, hi: float, *, log: bool) -> None:
    # axis ranges of log axes are given in log10 units; shapes and points in data units
    fig.update_xaxes(range=[math.log10(lo), math.log10(hi)] if log else [lo, hi])


def _vertical_budget(
    fig: go.Figure, limit: float, hi: float, *, log: bool, label: str, shade: bool
) -> None:
    fig.add_shape(
        type="line",
        x0=limit,
        x1=limit,
        y0=0,
        y1=1,
        yref="paper",
        line={"dash": "dash", "color": "#444"},
    )
    if shade and hi > limit:
        fig.add_shape(
            type="rect",
            x0=limit,
            x1=hi,
            y0=0,
            y1=1,
            yref="paper",
            fillcolor="#d62728",
            opacity=0.06,
            line_width=0,
            layer="below",
        )
    fig.add_annotation(
        x=math.log10(limit) if log else limit,  # annotations on log axes take log10 units
        y=1,
        yref="paper",
        text=label,
        showarrow=False,
        yanchor="bottom",
        font={"size": 11},
    )


def _accuracy_floor(fig: go.Figure, floor: float, drop: float | None) -> None:
    fig.add_hline(
        y=100 * floor,
        line={"dash": "dot", "color": "#444"},
        annotation_text=f"accuracy floor (teacher - {drop} points)",
        annotation_position="bottom left",
    )
    fig.add_hrect(
        y0=-1, y1=100 * floor, fillcolor="#d62728", opacity=0.06, line_width=0, layer="below"
    )


def _budget_label(x: str, limit: float) -> str:
    if x == "size_bytes":
        return f"budget {limit:,.0f} B"
    return f"budget {limit:.3g} BOPs" if x == "bops" else f"budget {limit:g} ms"


def objectives_together(report: StudyReport) -> go.Figure:
    """Size (x), latency (y) and accuracy (colour) together; front points ringed."""
    p = objectives_plot(report)
    fig = go.Figure()
    grey = {"color": _GREY, "size": 6, "opacity": 0.4}
    fig.add_trace(_trace(p.infeasible, "size_bytes", "latency_ms", name="infeasible", marker=grey))
    lo, hi = p.colour_range
    rings = ["#d62728" if f else "rgba(0,0,0,0)" for f in p.feasible["front"]]
    colour = {"color": 100 * p.feasible["accuracy"], "colorscale": "Viridis", "cmin": lo}
    colour |= {"cmax": hi, "size": 9, "colorbar": {"title": {"text": "val acc %"}}}
    colour["line"] = {"color": rings, "width": 2}
    name = "feasible (colour: accuracy)"
    fig.add_trace(_trace(p.feasible, "size_bytes", "latency_ms", name=name, marker=colour))
    if p.size_budget is not None:
        _vertical_budget(
            fig, p.size_budget, p.x_range[1], log=True, label="size budget", shade=False
        )
    if p.latency_budget is not None:
        fig.add_hline(y=p.latency_budget, line={"dash": "dash", "color": "#444"})
    title = f"{report.name}: size, latency and accuracy (front points ringed in red)"
    fig.update_layout(title=title, **_LAYOUT)
    fig.update_xaxes(title=AXES["size_bytes"][0], type="log")
    _set_x_range(fig, *p.x_range, log=True)
    fig.update_yaxes(title=AXES["latency_ms"][0])
    return fig


def parallel_objectives(report: StudyReport) -> go.Figure:
    """Parallel coordinates of every completed trial: accuracy, size, latency, BOPs (when
    measured) and the student; an axis the study optimises is marked "(objective)". Front
    trials red, feasible blue, infeasible grey. Drag on an axis to filter.

    Parallel coordinates draw with WebGL; browsers without a GPU fall back to software.
    """
    p = parallel_plot(report)
    colours = [[0, "#cfcfcf"], [0.5, _FEASIBLE], [1, COLOURS[0]]]
    line = {"color": p.group, "colorscale": colours, "cmin": 0, "cmax": 2}
    fig = go.Figure(go.Parcoords(line=line, dimensions=p.dimensions))
    fig.update_layout(
        title=f"{report.name}: objectives in parallel (red: front, blue: feasible, grey: "
        "over budget; drag on an axis to filter)",
        template="plotly_white",
        height=440,
        margin={"l": 70, "r": 60, "t": 110, "b": 30},
    )
    return fig


def hypervolume_figure(reports: Sequence[StudyReport]) -> go.Figure:
    """Normalised hypervolume of the feasible front after each trial, one line per study."""
    fig = go.Figure()
    for i, r in enumerate(reports):
        line = {"shape": "hv", "color": COLOURS[i % len(COLOURS)], "width": 2}
        style = {"line": line, "name": f"{r.name} (final {r.hypervolume:.4f})"}
        fig.add_trace(_trace(r.hv, "trial", "hypervolume", hover=None, mode="lines", **style))
    fig.update_layout(
        title="hypervolume over trials (normalised; higher is better)",
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.25},
    )
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="hypervolume")
    return fig


def policy_figure(report: StudyReport) -> go.Figure:
    """Heatmaps of the front's per-layer settings: one panel per family (bits, prune, ...)."""
    families = list(report.policies)
    fig = make_subplots(rows=1, cols=max(1, len(families)), subplot_titles=families or ["(none)"])
    students = front_students(report)
    for j, fam in enumerate(families, start=1):
        table = report.policies[fam]
        labels = [f"#{t} {students.get(t, '')}".strip() for t in table.index]
        z = table.to_numpy(dtype=float)
        if fam == "bits":
            text = [[bits_label(v) for v in row] for row in z]
            # log2: 2 -> 4 -> 8 bits are equal steps, and 16 / 32 (float) sit apart
            z, colorscale, zmin, zmax = np.log2(z), "Blues_r", 1.0, 5.0
        else:
            text = [[f"{v:.2f}" if not math.isnan(v) else "" for v in row] for row in z]
            colorscale, zmin, zmax = "Oranges", 0.0, 1.0
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(table.columns),
                y=labels,
                text=text,
                texttemplate="%{text}",
                colorscale=colorscale,
                zmin=zmin,
                zmax=zmax,
                showscale=False,
                hovertemplate=f"trial %{{y}}<br>layer %{{x}}<br>{fam} %{{text}}<extra></extra>",
            ),
            row=1,
            col=j,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=j)
    fig.update_layout(
        title=f"{report.name}: per-layer policy of each front point (most accurate first)",
        template="plotly_white",
        height=max(260, 120 + 26 * len(report.front)),
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
    )
    return fig


def compare_fronts(reports: Sequence[StudyReport], x: str) -> go.Figure:
    """The fronts of several studies overlaid on accuracy against ``x``, each labelled with
    its hypervolume."""
    fig = go.Figure()
    for i, r in enumerate(reports):
        colour = COLOURS[i % len(COLOURS)]
        front = front_by(r, x)
        fig.add_trace(_staircase(front, x, colour, showlegend=False))
        symbol = ["circle", "square", "diamond", "cross"][i % 4]
        name = f"{r.name} (HV {r.hypervolume:.4f}, {len(front)} points)"
        marker = {"color": colour, "size": 9, "symbol": symbol}
        fig.add_trace(_trace(front, x, name=name, marker=marker))
    tops = [100 * float(r.front["accuracy"].max()) for r in reports if len(r.front)]
    bottoms = [100 * float(r.front["accuracy"].min()) for r in reports if len(r.front)]
    fig = _layout(fig, f"fronts compared: accuracy against {AXES[x][2]}", x)
    if tops:
        fig.update_yaxes(range=[min(bottoms) - 1, max(tops) + 1])
    return fig
