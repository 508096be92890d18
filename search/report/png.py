"""Static PNGs of a report's main plots (matplotlib), for papers and slides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.report.data import StudyReport
from search.report.plot_data import (
    AXES,
    COLOURS,
    LOG_AXES,
    WARM,
    accuracy_plot,
    family_plot,
    front_by,
    front_students,
    objectives_plot,
)
from search.report.sensitivity import write_heatmaps
from search.report.tables import bits_label

_DPI = 110


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(height: float = 4.4) -> tuple[Any, Any]:
    """A new figure of the report's width and one set of axes."""
    return _plt().subplots(figsize=(7, height), dpi=_DPI)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def _front(ax: Any, front: pd.DataFrame, x: str, colour: str, **points: Any) -> None:
    """A front (from ``front_by``) as its staircase of best accuracy and its points."""
    ax.step(front[x], 100 * front["best"], where="post", c=colour, lw=1)
    ax.scatter(front[x], 100 * front["accuracy"], c=colour, **points)


def _ring(ax: Any, rows: pd.DataFrame, x: str, marker: str, colour: str, **style: Any) -> None:
    """Hollow marks around points already drawn (the knee, warm starts)."""
    ax.scatter(rows[x], 100 * rows["accuracy"], marker=marker, facecolors="none",
               edgecolors=colour, zorder=4, **style)  # fmt: skip


def _accuracy_vs(report: StudyReport, x: str, path: Path) -> Path:
    p = accuracy_plot(report, x)
    fig, ax = _axes()
    inf, ok = p.infeasible, p.feasible
    ax.scatter(inf[x], 100 * inf["accuracy"], s=10, c="#cccccc", label="infeasible")
    ax.scatter(ok[x], 100 * ok["accuracy"], s=12, c="#7f9fbf", label="feasible")
    if len(p.front):
        _front(ax, p.front, x, COLOURS[0], s=26, zorder=3, label="front (val)")
        if len(p.tested):
            ax.errorbar(
                p.tested[x],
                100 * p.tested["test_accuracy"],
                yerr=np.vstack([100 * p.tested["below"], 100 * p.tested["above"]]),
                fmt="o",
                mfc="none",
                c="#ff7f0e",
                ms=5,
                lw=0.8,
                capsize=2,
                label="front (test, 95% CI)",
                zorder=3,
            )
        if len(p.warm):
            _ring(ax, p.warm, x, "^", WARM, s=110, lw=1.4, label="from a warm start")
        _ring(ax, p.knee, x, "D", "k", s=170, lw=1.5, label="knee")
    for _, row in p.baselines.iterrows():
        ax.scatter(
            row[x], 100 * row["accuracy"], marker="*", s=130, c="#2ca02c", edgecolors="k", zorder=4
        )
        ax.annotate(
            str(row["baseline"]),
            (row[x], 100 * row["accuracy"]),
            textcoords="offset points",
            xytext=(5, -10),
            fontsize=7,
        )
    if p.budget is not None:
        ax.axvline(p.budget, ls="--", c="#444", lw=1)
        ax.axvspan(p.budget, ax.get_xlim()[1], color="#d62728", alpha=0.06)
    if p.accuracy_floor is not None:
        ax.axhline(100 * p.accuracy_floor, ls=":", c="#444", lw=1, label="accuracy floor (budget)")
    if p.log_x:
        ax.set_xscale("log")
    ax.set_xlabel(p.label)
    ax.set_ylabel("accuracy (%)")
    if p.y_range is not None:
        ax.set_ylim(*p.y_range)
    ax.set_title(f"{report.name}: accuracy against {p.short}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def _objectives(report: StudyReport, path: Path) -> Path:
    """Size against latency, accuracy as colour; front points ringed in red."""
    p = objectives_plot(report)
    fig, ax = _axes()
    inf, ok = p.infeasible, p.feasible
    ax.scatter(inf["size_bytes"], inf["latency_ms"], s=10, c="#cccccc", label="infeasible")
    points = ax.scatter(
        ok["size_bytes"],
        ok["latency_ms"],
        c=100 * ok["accuracy"],
        cmap="viridis",
        vmin=p.colour_range[0],
        s=22,
        label="feasible (colour: accuracy)",
        edgecolors=["#d62728" if f else "none" for f in ok["front"]],
        linewidths=1.2,
    )
    fig.colorbar(points, ax=ax, label="validation accuracy (%)")
    if p.size_budget is not None:
        ax.axvline(p.size_budget, ls="--", c="#444", lw=1)
    if p.latency_budget is not None:
        ax.axhline(p.latency_budget, ls="--", c="#444", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(AXES["size_bytes"][0])
    ax.set_ylabel(AXES["latency_ms"][0])
    ax.set_title(f"{report.name}: size, latency and accuracy (front ringed in red)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def _hypervolume(reports: Sequence[StudyReport], path: Path) -> Path:
    fig, ax = _axes(3.4)
    for i, r in enumerate(reports):
        ax.step(
            r.hv["trial"],
            r.hv["hypervolume"],
            where="post",
            c=COLOURS[i % len(COLOURS)],
            label=f"{r.name} (final {r.hypervolume:.4f})",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (normalised)")
    ax.set_title("hypervolume over trials")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _policy(report: StudyReport, path: Path) -> Path:
    fams = list(report.policies)
    n_rows = max(1, len(report.front))
    students = front_students(report)
    fig, axes = _plt().subplots(
        1,
        max(1, len(fams)),
        figsize=(3.4 * max(1, len(fams)) + 1, 1.2 + 0.28 * n_rows),
        dpi=_DPI,
        squeeze=False,
    )
    for ax, fam in zip(axes[0], fams, strict=False):
        table = report.policies[fam]
        z = table.to_numpy(dtype=float)
        if fam == "bits":
            shown = np.log2(np.nan_to_num(z, nan=32.0))
            im = ax.imshow(shown, cmap="Blues_r", vmin=1, vmax=5, aspect="auto")
            labels = [[bits_label(v, unit="") for v in row] for row in z]
        else:
            im = ax.imshow(z, cmap="Oranges", vmin=0, vmax=1, aspect="auto")
            labels = [["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in z]
        dark = im.norm(shown if fam == "bits" else np.nan_to_num(z)) > 0.6
        if fam == "bits":
            dark = ~dark  # reversed colour map: small values are dark
        for i, row in enumerate(labels):
            for j, text in enumerate(row):
                colour = "white" if dark[i, j] else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(table.columns)), list(table.columns), fontsize=8, rotation=30)
        ax.set_yticks(
            range(len(table.index)),
            [f"#{t} {students.get(t, '')}" for t in table.index],
            fontsize=7,
        )
        ax.set_title(fam, fontsize=9)
    fig.suptitle(f"{report.name}: per-layer policy of the front (most accurate first)", fontsize=10)
    return _save(fig, path)


def _families(report: StudyReport, path: Path) -> Path:
    """The front of each technique family alone beside the joint front (accuracy vs size)."""
    p = family_plot(report)
    fig, ax = _axes()
    markers = {"quantization only": "s", "pruning only": "D", "student only": "v"}
    for name, front in p.fronts.items():
        hv = p.hypervolumes[name]
        label = f"{name} (HV {hv:.4f}, {len(front)} points)" if math.isfinite(hv) else name
        colour = p.colours[name]
        if name == "joint":  # a wide pale band under the families' own fronts
            ax.step(front["size_bytes"], 100 * front["best"], where="post", c=colour, lw=3,
                    alpha=0.35)  # fmt: skip
            ax.scatter(front["size_bytes"], 100 * front["accuracy"], c=colour, s=16,
                       label=label, zorder=3)  # fmt: skip
            continue
        ax.step(front["size_bytes"], 100 * front["best"], where="post", c=colour, lw=1)
        # hollow and larger: a point the joint front shares stays visible around it
        ax.scatter(front["size_bytes"], 100 * front["accuracy"], marker=markers.get(name, "o"),
                   s=60, facecolors="none", edgecolors=colour, lw=1.3, label=label,
                   zorder=4)  # fmt: skip
    for _, row in p.teacher.iterrows():
        ax.scatter(row["size_bytes"], 100 * row["accuracy"], marker="*", s=130, c="#2ca02c",
                   edgecolors="k", zorder=5, label="teacher")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(*p.x_range)
    if p.y_range is not None:
        ax.set_ylim(*p.y_range)
    ax.set_xlabel(AXES["size_bytes"][0])
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{report.name}: which technique? Fronts of each family alone")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def _compare(reports: Sequence[StudyReport], x: str, path: Path) -> Path:
    fig, ax = _axes()
    markers = "os^Dv<>"
    for i, r in enumerate(reports):
        label = f"{r.name} (HV {r.hypervolume:.4f})"
        marker = markers[i % len(markers)]
        _front(ax, front_by(r, x), x, COLOURS[i % len(COLOURS)], marker=marker, s=24, label=label)
    if x in LOG_AXES:
        ax.set_xscale("log")
    ax.set_xlabel(AXES[x][0])
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"fronts compared: accuracy against {AXES[x][2]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def write_pngs(reports: Sequence[StudyReport], dest: Path) -> tuple[Path, ...]:
    """Write the PNGs; names start with ``report-<study>-`` (``report-compare-`` for several)."""
    out: list[Path] = []
    if len(reports) > 1:
        out.append(_compare(reports, "size_bytes", dest / "report-compare-accuracy-size.png"))
        out.append(_compare(reports, "latency_ms", dest / "report-compare-accuracy-latency.png"))
        if any("bops" in r.objectives for r in reports):
            out.append(_compare(reports, "bops", dest / "report-compare-accuracy-bops.png"))
        out.append(_hypervolume(reports, dest / "report-compare-hypervolume.png"))
    for r in reports:
        if not (r.trials["state"] == "COMPLETE").any():
            continue  # nothing measured yet: the HTML and Markdown say so
        out.append(_accuracy_vs(r, "size_bytes", dest / f"report-{r.name}-accuracy-size.png"))
        out.append(_accuracy_vs(r, "latency_ms", dest / f"report-{r.name}-accuracy-latency.png"))
        if "bops" in r.objectives:
            out.append(_accuracy_vs(r, "bops", dest / f"report-{r.name}-accuracy-bops.png"))
        out.append(_objectives(r, dest / f"report-{r.name}-objectives.png"))
        out.append(_hypervolume([r], dest / f"report-{r.name}-hypervolume.png"))
        out.append(_policy(r, dest / f"report-{r.name}-policy.png"))
        out.append(_families(r, dest / f"report-{r.name}-families.png"))
    for r in reports:  # measured before any trial: drawn even when none completed
        if r.sensitivity_model is not None:
            path = dest / f"report-{r.name}-sensitivity.png"
            out.append(write_heatmaps(r.sensitivity, path, model=r.sensitivity_model))
    return tuple(out)
