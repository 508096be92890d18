"""Interactive plotly figures of "which technique": the technique families' fronts beside the
joint front, and the per-layer sensitivity heatmaps. They draw what
:func:`search.report.plot_data.family_plot` and :func:`search.report.sensitivity.heatmap`
computed."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search.report.data import StudyReport
from search.report.figures import _layout, _set_x_range, _staircase, _trace
from search.report.plot_data import family_plot
from search.report.sensitivity import PANELS, heatmap, value_label


def family_figure(report: StudyReport) -> go.Figure:
    """Accuracy against size: each technique family's front alone (over its own trials and
    the teacher) and the joint front, each labelled with its hypervolume."""
    p = family_plot(report)
    fig = go.Figure()
    symbols = {
        "quantization only": "square-open",
        "pruning only": "diamond-open",
        "student only": "triangle-down-open",
    }
    for name, front in p.fronts.items():
        colour = p.colours[name]
        hv = p.hypervolumes[name]
        label = f"{name} (HV {hv:.4f}, {len(front)} points)" if math.isfinite(hv) else name
        joint = name == "joint"
        line = _staircase(front, "size_bytes", colour, showlegend=False)
        # joint: a wide pale band under the families' own fronts, its points small
        line.line.width = 5 if joint else 1.5
        line.opacity = 0.35 if joint else 1.0
        fig.add_trace(line)
        marker: dict[str, object] = {
            "color": colour,
            "size": 6 if joint else 13,
            "symbol": symbols.get(name, "circle"),
        }
        if not joint:
            marker["line"] = {"width": 2}
        fig.add_trace(_trace(front, "size_bytes", name=label, marker=marker))
    if len(p.teacher):
        star = {"symbol": "star", "size": 14, "color": "#2ca02c", "line": {"color": "black"}}
        fig.add_trace(_trace(p.teacher, "size_bytes", name="teacher", marker=star))
    fig = _layout(fig, f"{report.name}: which technique? Fronts of each family alone", "size_bytes")
    _set_x_range(fig, *p.x_range, log=True)
    if p.y_range is not None:
        fig.update_yaxes(range=list(p.y_range))
    return fig


def sensitivity_figure(frame: pd.DataFrame, model: str = "teacher") -> go.Figure:
    """``model``'s sensitivity heatmaps: layer x bits beside layer x pruning ratio."""
    panels = [heatmap(frame, kind, model) for kind in PANELS]
    titles = [f"layer x {PANELS[p.kind]} ({p.colour_label})" for p in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.12)
    for j, p in enumerate(panels, start=1):
        if p.empty:
            continue
        fig.add_trace(
            go.Heatmap(
                z=p.z,
                x=[value_label(p.kind, v) for v in p.values],
                y=p.layers,
                text=p.text,
                texttemplate="%{text}",
                colorscale="Reds" if p.measured else "Viridis",
                showscale=False,
                hovertemplate=(
                    f"layer %{{y}}<br>{PANELS[p.kind]} %{{x}}<br>{p.colour_label} "
                    "%{text}<extra></extra>"
                ),
            ),
            row=1,
            col=j,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=j)  # model order, top down
    layers = max([len(p.layers) for p in panels] + [1])
    fig.update_layout(
        title=f"{model}: per-layer sensitivity (one layer changed at a time)",
        template="plotly_white",
        height=max(260, 130 + 28 * layers),
        margin={"l": 80, "r": 20, "t": 80, "b": 40},
    )
    return fig
