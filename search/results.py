"""Result tables (one row per trial), the feasible Pareto front, and the size plot."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from evaluators.budgets import Budget
from search.environment import stored_spec
from search.infeasible import why_nothing_feasible
from search.objective_names import DEFAULT_OBJECTIVES, directions, study_objectives
from search.pareto import non_dominated

#: Leading columns of every result table, in order; configuration columns follow.
LEADING = [
    "trial",
    "state",
    "feasible",
    "baseline",
    "accuracy",
    "size_bytes",
    "latency_ms",
    "latency_p90_ms",
    "latency_cv",
    "final_latency_ms",
    "final_latency_spread",
    "bops",
]
_ATTR_COLUMNS = [
    "accuracy",
    "size_bytes",
    "latency_ms",
    "latency_p90_ms",
    "latency_cv",
    "cheap_s",
    "rung0_s",
    "compress_s",
    "evaluate_s",
    "bops",
    "macs",
    "size_bound_bytes",
    "latency_predicted_ms",
    "latency_wait_s",
]
#: Test-split figures: measured at the end of a run for the front and the baselines only
#: (:mod:`search.final`), shown in front.csv and the report, never ranked or filtered on.
TEST_COLUMNS = ["test_accuracy", "test_accuracy_low", "test_accuracy_high"]
#: Study user attribute holding test-split figures measured after the trials finished
#: (``{trial number: {test_accuracy, ...}}``; a finished trial takes no new user attribute).
TEST_FIGURES_ATTR = "test_remeasured"
#: The final latency of the front and the baselines, timed side by side at the end of a run
#: (:mod:`search.final`): the figure quoted, ranked on and divided by the teacher's.
FINAL_COLUMNS = ["final_latency_ms", "final_latency_spread"]
#: Study user attribute holding them: ``{trial number: {final_latency_ms, ...}}``.
FINAL_ATTR = "final_figures"
#: Study user attribute holding the front's latencies timed after a predicted-latency search.
MEASURED_LATENCY_ATTR = "latency_measured"
#: How a trial ran (early stopping, retries, which worker), with their empty values.
_RUN_ATTRS: dict[str, object] = {
    "stopped_epoch": math.nan,
    "prune_reason": "",
    "retry_of": math.nan,
    "worker": "",
    "warm_start": "",
}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial (queued ones too, state ``WAITING``): state, feasibility, figures,
    every parameter, and ``front`` (over the study's own objectives)."""
    rows = []
    measured = study.user_attrs.get(MEASURED_LATENCY_ATTR, {})
    later = _merged(study.user_attrs.get(TEST_FIGURES_ATTR, {}), study.user_attrs.get(FINAL_ATTR))
    # a task's extra metrics (``nn_agreement``) measured on the test split at the end
    extra = sorted({k[5:] for f in later.values() for k in f if k.startswith("test_")})
    extra = [k for k in extra if f"test_{k}" not in TEST_COLUMNS]
    for t in study.get_trials(deepcopy=False):
        row: dict[str, object] = {
            "trial": t.number,
            "state": t.state.name,
            "feasible": t.state == optuna.trial.TrialState.COMPLETE
            and all(v <= 0 for v in t.constraints.values()),
            "baseline": t.user_attrs.get("baseline", ""),
        }
        for col in _ATTR_COLUMNS:
            row[col] = t.user_attrs.get(col, math.nan)
        for col in [*FINAL_COLUMNS, *TEST_COLUMNS, *_extra_metric_columns(t.user_attrs)]:
            row[col] = t.user_attrs.get(col, math.nan)
        for col in extra:
            row[col] = t.user_attrs.get(col, math.nan)
        row.update(later.get(str(t.number), {}))
        if "skipped" in t.user_attrs:
            row["skipped"] = t.user_attrs["skipped"]
        row.update(measured.get(str(t.number), {}))
        row.update(t.params)
        for key, value in t.constraints.items():
            row[f"constraint.{key}"] = value
        row["fail_reason"] = t.user_attrs.get("fail_reason", "")
        for key, empty in _RUN_ATTRS.items():
            row[key] = t.user_attrs.get(key, empty)
        row["duration_s"] = t.duration.total_seconds() if t.duration is not None else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=[*LEADING, "front"])
    df["front"] = front_mask(df, study_objectives(study))
    params = sorted(
        c
        for c in df.columns
        if c in ("student", "act_bits", "granularity", "rounding")
        or c.startswith(("bits.", "prune.", "channels.", "heads."))
    )
    params.sort(key=lambda c: (c != "student", c.split(".")[0], c))
    rest = [c for c in df.columns if c not in LEADING and c not in params and c != "front"]
    return df[[*LEADING, *params, *rest, "front"]]


def _merged(*stores: object) -> dict[str, dict[str, object]]:
    """Per trial number, the figures of every study-level store (later stores win)."""
    out: dict[str, dict[str, object]] = {}
    for store in stores:
        if isinstance(store, dict):
            for number, figures in store.items():
                if isinstance(figures, dict):
                    out.setdefault(str(number), {}).update(figures)
    return out


def quoted_latency(df: pd.DataFrame) -> pd.Series:
    """The latency a row is quoted, ranked and compared with: its final side-by-side figure
    (``final_latency_ms``) where it has one, else the search-time ``latency_ms``."""
    search = df["latency_ms"].astype(float)
    if "final_latency_ms" not in df:
        return search
    final = df["final_latency_ms"].astype(float)
    return final.where(final.notna(), search)


def _extra_metric_columns(attrs: dict[str, object]) -> list[str]:
    """A task's extra metrics (``nn_agreement``): figures stored for both splits."""
    extra = [k for k in attrs if f"test_{k}" in attrs and k != "accuracy"]
    return [c for k in extra for c in (k, f"test_{k}")]


def front_mask(df: pd.DataFrame, objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> pd.Series:
    """Feasible completed trials that no other feasible completed trial dominates on
    ``objectives`` (result column names; a study's are ``study_objectives(study)``)."""
    mask = pd.Series(False, index=df.index)
    if df.empty:
        return mask
    ok = (df["state"] == "COMPLETE") & df["feasible"].astype(bool)
    cols = list(objectives)
    sub = df.loc[ok, cols].astype(float)
    sub = sub[np.isfinite(sub.to_numpy()).all(axis=1)]
    if len(sub):
        keep = non_dominated(sub.to_numpy(), directions(cols))
        mask.loc[sub.index[keep]] = True
    return mask


def front_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The feasible Pareto front, most accurate first (same columns as the trials table)."""
    front = trials[trials["front"]]
    return front.sort_values(["accuracy", "size_bytes"], ascending=[False, True])


def write_outputs(study: optuna.Study, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``trials.csv``, ``front.csv`` and ``front.png`` into ``out_dir``.

    With no feasible trial, front.csv has the columns and no row, and front.png shows the
    trials there are with the one line of :func:`search.infeasible.why_nothing_feasible`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(study)
    front = front_frame(trials)
    hidden = [c for c in trials.columns if c.startswith("test_")]
    trials.drop(columns=hidden).to_csv(out_dir / "trials.csv", index=False)
    front.to_csv(out_dir / "front.csv", index=False)
    note = None if len(front) else why_nothing_feasible(trials, _stored_budget(study))
    plot_accuracy_size(trials, out_dir / "front.png", title=study.study_name, note=note)
    return trials, front


def _stored_budget(study: optuna.Study) -> Budget | None:
    spec = stored_spec(study)
    return spec.budget if spec is not None else None


def plot_accuracy_size(
    trials: pd.DataFrame, path: Path, *, title: str = "", note: str | None = None
) -> None:
    """Accuracy against packed size: all trials, infeasible ones faded, front and baselines.

    ``note`` is written across the plot (why nothing is feasible); trials without a finite
    size and accuracy (failed, or stopped by the cheap checks) are not drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = trials[trials["state"] == "COMPLETE"]
    figures = done[["size_bytes", "accuracy"]].astype(float)
    done = done[np.isfinite(figures.to_numpy()).all(axis=1) & (figures["size_bytes"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    infeasible = done[~done["feasible"].astype(bool)]
    feasible = done[done["feasible"].astype(bool)]
    ax.scatter(
        infeasible["size_bytes"],
        100 * infeasible["accuracy"],
        s=12,
        c="#cccccc",
        label="infeasible (over budget)",
    )
    ax.scatter(
        feasible["size_bytes"], 100 * feasible["accuracy"], s=14, c="#7f9fbf", label="feasible"
    )
    front = done[done["front"]].sort_values("size_bytes")
    if len(front):
        # the 2-D staircase of the (3-D) front: best accuracy reached at each size
        stair = front.assign(best=front["accuracy"].cummax())
        ax.step(stair["size_bytes"], 100 * stair["best"], where="post", c="#d62728", lw=1)
        ax.scatter(
            front["size_bytes"],
            100 * front["accuracy"],
            s=28,
            c="#d62728",
            label="Pareto front",
            zorder=3,
        )
    for _, row in done[done["baseline"].astype(str) != ""].iterrows():
        ax.scatter(
            row["size_bytes"],
            100 * row["accuracy"],
            marker="*",
            s=140,
            c="#2ca02c",
            edgecolors="k",
            zorder=4,
        )
        ax.annotate(
            str(row["baseline"]),
            (row["size_bytes"], 100 * row["accuracy"]),
            textcoords="offset points",
            xytext=(6, -10),
            fontsize=8,
        )
    if len(done):  # a log axis needs a positive value to place its ticks
        ax.set_xscale("log")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if note:
        ax.text(
            0.5,
            0.5,
            textwrap.fill(note, 60),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            bbox={"fc": "white", "ec": "#999999"},
        )
    ax.set_xlabel("packed size (bytes, log scale)")
    ax.set_ylabel("validation accuracy (%)")
    if len(done):
        top = 100 * done["accuracy"].max()
        ax.set_ylim(max(0.0, top - 15), min(100.5, top + 1.5))
    ax.set_title(f"{title}: accuracy against size" if title else "accuracy against size")
    ax.grid(True, which="both", alpha=0.3)
    if len(done):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
