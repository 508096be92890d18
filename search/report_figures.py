"""Interactive plotly figures of a report (SVG only: no WebGL, so they draw everywhere)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.report import StudyReport, fmt_interval, fmt_pct

COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
_GREY = "#b0b0b0"
_FEASIBLE = "#7f9fbf"
_LABELS = {
    "size_bytes": "packed size (bytes, log scale)",
    "latency_ms": "median latency (ms)",
    "bops": "bit operations per example (BOPs, log scale)",
}
_POSITIONS = ("top center", "bottom center", "middle right")
_BUDGET_KEYS = {"size_bytes": "max_size_bytes", "latency_ms": "max_latency_ms", "bops": "max_bops"}
#: Cost axes drawn on a log scale, and their short names in titles.
_LOG = ("size_bytes", "bops")
_SHORT = {"size_bytes": "size", "latency_ms": "latency", "bops": "BOPs"}


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
        if r.get("baseline"):
            text += f"<br>baseline: {r['baseline']}"
        out.append(text)
    return out


def _layout(fig: go.Figure, title: str, x: str, *, log_x: bool) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=460,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.18},
        hovermode="closest",
    )
    fig.update_xaxes(title=_LABELS[x], type="log" if log_x else "linear")
    fig.update_yaxes(title="accuracy (%)")
    return fig


def _y_range(report: StudyReport) -> list[float]:
    done = report.trials[report.trials["state"] == "COMPLETE"]
    if done.empty:
        return [0, 100]
    top = 100 * float(done["accuracy"].max())
    return [max(0.0, top - 15), min(101.0, top + 1.5)]


def accuracy_vs(report: StudyReport, x: str) -> go.Figure:
    """Accuracy against ``x`` (size, latency or BOPs) for one study: every trial, the front,
    the test figures of the front, baselines, the knee, budgets as lines and over-budget
    areas."""
    done = report.trials[report.trials["state"] == "COMPLETE"]
    feasible = done[done["feasible"].astype(bool)]
    infeasible = done[~done["feasible"].astype(bool)]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=infeasible[x],
            y=100 * infeasible["accuracy"],
            mode="markers",
            name="infeasible (over budget)",
            marker={"color": _GREY, "size": 6, "opacity": 0.45},
            hovertext=_hover(infeasible),
            hoverinfo="text",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=feasible[x],
            y=100 * feasible["accuracy"],
            mode="markers",
            name="feasible",
            marker={"color": _FEASIBLE, "size": 7},
            hovertext=_hover(feasible),
            hoverinfo="text",
        )
    )
    front = report.front.sort_values(x)
    if len(front):
        best = front["accuracy"].cummax()
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=100 * best,
                mode="lines",
                line={"shape": "hv", "color": COLOURS[0], "width": 1.5},
                name=f"front (best accuracy up to this {_SHORT[x]})",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=100 * front["accuracy"],
                mode="markers",
                name="Pareto front (validation)",
                marker={"color": COLOURS[0], "size": 9},
                hovertext=_hover(front),
                hoverinfo="text",
            )
        )
        tested = front[front["test_accuracy"].notna()]
        if len(tested):
            low = tested["test_accuracy"] - tested["test_accuracy_low"]
            high = tested["test_accuracy_high"] - tested["test_accuracy"]
            fig.add_trace(
                go.Scatter(
                    x=tested[x],
                    y=100 * tested["test_accuracy"],
                    mode="markers",
                    name="front on the test split (95% CI)",
                    marker={"color": "#ff7f0e", "size": 8, "symbol": "circle-open"},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": 100 * high.fillna(0),
                        "arrayminus": 100 * low.fillna(0),
                        "thickness": 1,
                        "width": 3,
                    },
                    hovertext=_hover(tested),
                    hoverinfo="text",
                )
            )
        knee = front[front["knee"]]
        fig.add_trace(
            go.Scatter(
                x=knee[x],
                y=100 * knee["accuracy"],
                mode="markers+text",
                name="suggested knee",
                text=["knee"] * len(knee),
                textposition="top left",
                marker={
                    "symbol": "diamond-open",
                    "size": 16,
                    "color": "black",
                    "line": {"width": 2},
                },
                hovertext=_hover(knee),
                hoverinfo="text",
            )
        )
    base = done[done["baseline"].astype(str) != ""]
    fig.add_trace(
        go.Scatter(
            x=base[x],
            y=100 * base["accuracy"],
            mode="markers+text",
            name="baselines",
            text=base["baseline"].astype(str),
            textposition=[_POSITIONS[i % len(_POSITIONS)] for i in range(len(base))],
            marker={
                "symbol": "star",
                "size": 14,
                "color": "#2ca02c",
                "line": {"color": "black", "width": 1},
            },
            hovertext=_hover(base),
            hoverinfo="text",
        )
    )
    _budget_lines(fig, report, x)
    title = f"accuracy against {_SHORT[x]}"
    fig = _layout(fig, f"{report.name}: {title}", x, log_x=x in _LOG)
    fig.update_yaxes(range=_y_range(report))
    return fig


def _x_range(values: pd.Series, *, log: bool, include: float | None) -> tuple[float, float]:
    """The x-axis range in data units, wide enough for the points and the budget line."""
    vals = [float(v) for v in values.dropna() if v > 0] + ([include] if include else [])
    if not vals:
        return (1.0, 10.0)
    lo, hi = min(vals), max(vals)
    if log:
        return lo / 1.3, hi * 1.3
    pad = 0.06 * (hi - lo) or 0.06 * hi
    return lo - pad, hi + pad


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


def _budget_label(x: str, limit: float) -> str:
    if x == "size_bytes":
        return f"budget {limit:,.0f} B"
    return f"budget {limit:.3g} BOPs" if x == "bops" else f"budget {limit:g} ms"


def _budget_lines(fig: go.Figure, report: StudyReport, x: str) -> None:
    limit = report.budget(_BUDGET_KEYS[x])
    log = x in _LOG
    done = report.trials[report.trials["state"] == "COMPLETE"]
    lo, hi = _x_range(done[x], log=log, include=limit)
    _set_x_range(fig, lo, hi, log=log)
    if limit is not None:
        label = _budget_label(x, limit)
        _vertical_budget(fig, limit, hi, log=log, label=label, shade=True)
    floor = report.accuracy_floor
    if floor is not None:
        drop = report.settings["budget"]["max_accuracy_drop"]
        fig.add_hline(
            y=100 * floor,
            line={"dash": "dot", "color": "#444"},
            annotation_text=f"accuracy floor (teacher - {drop} points)",
            annotation_position="bottom left",
        )
        fig.add_hrect(
            y0=-1, y1=100 * floor, fillcolor="#d62728", opacity=0.06, line_width=0, layer="below"
        )


def objectives_together(report: StudyReport) -> go.Figure:
    """Size (x), latency (y) and accuracy (colour) together; front points ringed."""
    done = report.trials[report.trials["state"] == "COMPLETE"]
    feasible = done[done["feasible"].astype(bool)]
    infeasible = done[~done["feasible"].astype(bool)]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=infeasible["size_bytes"],
            y=infeasible["latency_ms"],
            mode="markers",
            name="infeasible",
            marker={"color": _GREY, "size": 6, "opacity": 0.4},
            hovertext=_hover(infeasible),
            hoverinfo="text",
        )
    )
    acc = 100 * feasible["accuracy"]
    lo = float(np.nanpercentile(acc, 5)) if len(acc) else 0.0
    hi = float(acc.max()) if len(acc) else 100.0
    fig.add_trace(
        go.Scatter(
            x=feasible["size_bytes"],
            y=feasible["latency_ms"],
            mode="markers",
            name="feasible (colour: accuracy)",
            marker={
                "color": 100 * feasible["accuracy"],
                "colorscale": "Viridis",
                "cmin": lo,
                "cmax": hi,
                "size": 9,
                "colorbar": {"title": {"text": "val acc %"}},
                "line": {
                    "color": ["#d62728" if f else "rgba(0,0,0,0)" for f in feasible["front"]],
                    "width": 2,
                },
            },
            hovertext=_hover(feasible),
            hoverinfo="text",
        )
    )
    size_limit = report.budget("max_size_bytes")
    lo, hi = _x_range(done["size_bytes"], log=True, include=size_limit)
    if size_limit is not None:
        _vertical_budget(fig, size_limit, hi, log=True, label="size budget", shade=False)
    latency_limit = report.budget("max_latency_ms")
    if latency_limit is not None:
        fig.add_hline(y=latency_limit, line={"dash": "dash", "color": "#444"})
    fig.update_layout(
        title=f"{report.name}: size, latency and accuracy (front points ringed in red)",
        template="plotly_white",
        height=460,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.18},
    )
    fig.update_xaxes(title=_LABELS["size_bytes"], type="log")
    _set_x_range(fig, lo, hi, log=True)
    fig.update_yaxes(title=_LABELS["latency_ms"])
    return fig


def parallel_objectives(report: StudyReport) -> go.Figure:
    """Parallel coordinates of every completed trial: accuracy, size, latency, BOPs (when
    measured) and the student; an axis the study optimises is marked "(objective)". Front
    trials red, feasible blue, infeasible grey. Drag on an axis to filter.

    Parallel coordinates draw with WebGL; browsers without a GPU fall back to software.
    """
    done = report.trials[report.trials["state"] == "COMPLETE"].copy()
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
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": group,
                "colorscale": [[0, "#cfcfcf"], [0.5, _FEASIBLE], [1, COLOURS[0]]],
                "cmin": 0,
                "cmax": 2,
            },
            dimensions=dims,
        )
    )
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
        fig.add_trace(
            go.Scatter(
                x=r.hv["trial"],
                y=r.hv["hypervolume"],
                mode="lines",
                line={"shape": "hv", "color": COLOURS[i % len(COLOURS)], "width": 2},
                name=f"{r.name} (final {r.hypervolume:.4f})",
            )
        )
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
    students = dict(zip(report.front["trial"], report.front["student"], strict=True))
    for j, fam in enumerate(families, start=1):
        table = report.policies[fam]
        labels = [f"#{t} {students.get(t, '')}".strip() for t in table.index]
        z = table.to_numpy(dtype=float)
        if fam == "bits":
            text = [[_bits_label(v) for v in row] for row in z]
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


def _bits_label(v: float) -> str:
    if math.isnan(v):
        return ""
    return "fp32" if v >= 32 else "fp16" if v >= 16 else f"{int(v)}b"


def compare_fronts(reports: Sequence[StudyReport], x: str) -> go.Figure:
    """The fronts of several studies overlaid on accuracy against ``x``, each labelled with
    its hypervolume."""
    fig = go.Figure()
    for i, r in enumerate(reports):
        colour = COLOURS[i % len(COLOURS)]
        front = r.front.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=100 * front["accuracy"].cummax(),
                mode="lines",
                line={"shape": "hv", "color": colour, "width": 1.5},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=100 * front["accuracy"],
                mode="markers",
                marker={
                    "color": colour,
                    "size": 9,
                    "symbol": ["circle", "square", "diamond", "cross"][i % 4],
                },
                name=f"{r.name} (HV {r.hypervolume:.4f}, {len(front)} points)",
                hovertext=_hover(front),
                hoverinfo="text",
            )
        )
    tops = [100 * float(r.front["accuracy"].max()) for r in reports if len(r.front)]
    bottoms = [100 * float(r.front["accuracy"].min()) for r in reports if len(r.front)]
    fig = _layout(
        fig,
        f"fronts compared: accuracy against {_SHORT[x]}",
        x,
        log_x=x in _LOG,
    )
    if tops:
        fig.update_yaxes(range=[min(bottoms) - 1, max(tops) + 1])
    return fig
