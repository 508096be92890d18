"""Static PNGs of a report's main plots (matplotlib), for papers and slides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search.report import StudyReport

COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
_DPI = 110
#: Per x axis: its label, its budget key, its short name; size and BOPs on a log scale.
_AXES = {
    "size_bytes": ("packed size (bytes, log scale)", "max_size_bytes", "size"),
    "latency_ms": ("median latency (ms)", "max_latency_ms", "latency"),
    "bops": ("bit operations per example (BOPs, log scale)", "max_bops", "BOPs"),
}
_LOG = ("size_bytes", "bops")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _accuracy_vs(report: StudyReport, x: str, path: Path) -> Path:
    plt = _plt()
    done = report.trials[report.trials["state"] == "COMPLETE"]
    ok = done["feasible"].astype(bool)
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=_DPI)
    ax.scatter(
        done.loc[~ok, x], 100 * done.loc[~ok, "accuracy"], s=10, c="#cccccc", label="infeasible"
    )
    ax.scatter(done.loc[ok, x], 100 * done.loc[ok, "accuracy"], s=12, c="#7f9fbf", label="feasible")
    front = report.front.sort_values(x)
    if len(front):
        ax.step(front[x], 100 * front["accuracy"].cummax(), where="post", c=COLOURS[0], lw=1)
        ax.scatter(
            front[x], 100 * front["accuracy"], s=26, c=COLOURS[0], zorder=3, label="front (val)"
        )
        tested = front[front["test_accuracy"].notna()]
        if len(tested):
            err = np.vstack(
                [
                    100 * (tested["test_accuracy"] - tested["test_accuracy_low"]).fillna(0),
                    100 * (tested["test_accuracy_high"] - tested["test_accuracy"]).fillna(0),
                ]
            )
            ax.errorbar(
                tested[x],
                100 * tested["test_accuracy"],
                yerr=err,
                fmt="o",
                mfc="none",
                c="#ff7f0e",
                ms=5,
                lw=0.8,
                capsize=2,
                label="front (test, 95% CI)",
                zorder=3,
            )
        knee = front[front["knee"]]
        ax.scatter(
            knee[x],
            100 * knee["accuracy"],
            s=170,
            marker="D",
            facecolors="none",
            edgecolors="k",
            lw=1.5,
            zorder=4,
            label="knee",
        )
    base = done[done["baseline"].astype(str) != ""]
    for _, row in base.iterrows():
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
    label, budget_key, short = _AXES[x]
    limit = report.budget(budget_key)
    if limit is not None:
        ax.axvline(limit, ls="--", c="#444", lw=1)
        ax.axvspan(limit, ax.get_xlim()[1], color="#d62728", alpha=0.06)
    floor = report.accuracy_floor
    if floor is not None:
        ax.axhline(100 * floor, ls=":", c="#444", lw=1, label="accuracy floor (budget)")
    if x in _LOG:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (%)")
    if len(done):
        top = 100 * done["accuracy"].max()
        ax.set_ylim(max(0.0, top - 15), min(101.0, top + 1.5))
    ax.set_title(f"{report.name}: accuracy against {short}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _objectives(report: StudyReport, path: Path) -> Path:
    """Size against latency, accuracy as colour; front points ringed in red."""
    plt = _plt()
    done = report.trials[report.trials["state"] == "COMPLETE"]
    ok = done["feasible"].astype(bool)
    feasible = done[ok]
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=_DPI)
    ax.scatter(
        done.loc[~ok, "size_bytes"],
        done.loc[~ok, "latency_ms"],
        s=10,
        c="#cccccc",
        label="infeasible",
    )
    acc = 100 * feasible["accuracy"]
    lo = float(np.nanpercentile(acc, 5)) if len(acc) else 0.0
    points = ax.scatter(
        feasible["size_bytes"],
        feasible["latency_ms"],
        c=acc,
        cmap="viridis",
        vmin=lo,
        s=22,
        label="feasible (colour: accuracy)",
        edgecolors=["#d62728" if f else "none" for f in feasible["front"]],
        linewidths=1.2,
    )
    fig.colorbar(points, ax=ax, label="validation accuracy (%)")
    for key, line in (("max_size_bytes", ax.axvline), ("max_latency_ms", ax.axhline)):
        limit = report.budget(key)
        if limit is not None:
            line(limit, ls="--", c="#444", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("packed size (bytes, log scale)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(f"{report.name}: size, latency and accuracy (front ringed in red)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _hypervolume(reports: Sequence[StudyReport], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=_DPI)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _policy(report: StudyReport, path: Path) -> Path:
    plt = _plt()
    fams = list(report.policies)
    n_rows = max(1, len(report.front))
    fig, axes = plt.subplots(
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
            labels = [
                ["fp32" if v >= 32 else "fp16" if v >= 16 else f"{int(v)}" for v in row]
                for row in z
            ]
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
        students = dict(zip(report.front["trial"], report.front["student"], strict=True))
        ax.set_yticks(
            range(len(table.index)),
            [f"#{t} {students.get(t, '')}" for t in table.index],
            fontsize=7,
        )
        ax.set_title(fam, fontsize=9)
    fig.suptitle(f"{report.name}: per-layer policy of the front (most accurate first)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _compare(reports: Sequence[StudyReport], x: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=_DPI)
    markers = "os^Dv<>"
    for i, r in enumerate(reports):
        f = r.front.sort_values(x)
        colour = COLOURS[i % len(COLOURS)]
        ax.step(f[x], 100 * f["accuracy"].cummax(), where="post", c=colour, lw=1)
        ax.scatter(
            f[x],
            100 * f["accuracy"],
            c=colour,
            marker=markers[i % len(markers)],
            s=24,
            label=f"{r.name} (HV {r.hypervolume:.4f})",
        )
    if x in _LOG:
        ax.set_xscale("log")
    ax.set_xlabel(_AXES[x][0])
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"fronts compared: accuracy against {_AXES[x][2]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
    return tuple(out)
