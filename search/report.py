"""A study (or several) as a report: the data behind it and the files it writes.

``frontier report STUDY [STUDY ...]`` writes, into one folder:

- ``report.html``: one self-contained page (plotly.js inlined once; no network needed):
  the front as a table, interactive plots, hypervolume, the knee point, per-layer policies
  and the environment; with several studies, their fronts overlaid first;
- ``report.md``: the same facts in Markdown, linking
- ``report-*.png``: static plots (matplotlib) for papers and slides.

The front, the hypervolume and the knee are over the study's own objectives (recorded in the
study; accuracy, size and latency unless ``[study] objectives`` said otherwise). Hypervolume is
:mod:`search.quality`'s (the same figure ``frontier status`` prints): objectives divided by the
study's own teacher's, against one fixed reference point, so studies from different machines
compare by relative gains. Only feasible trials count.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from search.environment import ENV_ATTR
from search.knee import knee_index
from search.objective_names import DEFAULT_OBJECTIVES, directions, study_objectives
from search.quality import hypervolume_curve
from search.results import front_frame, trials_frame
from search.stored import StoredStudy
from search.testsplit import TEST_COLUMNS, held_out_figures

#: Trial user attributes shown when present (other issues add them); not all are in
#: ``trials_frame``'s columns.
EXTRA_ATTRS = ("bops", *TEST_COLUMNS, "config")
#: Per-layer value a layer takes when its config does not list it.
POLICY_DEFAULTS = {"bits": 32.0, "prune": 0.0}


@dataclass
class StudyReport:
    """Everything one study's report shows.

    Attributes:
        name: The study's name.
        stored: The opened study.
        trials: ``trials_frame`` of the study plus :data:`EXTRA_ATTRS` columns.
        front: Front rows, most accurate first, with test figures, ``summary`` and ``knee``.
        teacher: The teacher baseline's row, when the study has one.
        hv: Hypervolume after each trial: columns ``trial``, ``hypervolume``.
        knee_trial: The suggested knee point's trial number (``None`` for an empty front).
        test_note: Where the test figures come from.
        policies: Per family (``bits``, ``prune``, ...): front trials x layers.
        environment: What the study recorded about its machine, or ``{}``.
        settings: The study's settings as plain data, or ``{}``.
        objectives: What the study optimises (result column names), in canonical order.
    """

    name: str
    stored: StoredStudy
    trials: pd.DataFrame
    front: pd.DataFrame
    teacher: pd.Series | None
    hv: pd.DataFrame
    knee_trial: int | None
    test_note: str
    policies: dict[str, pd.DataFrame]
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES

    @property
    def hypervolume(self) -> float:
        return float(self.hv["hypervolume"].iloc[-1]) if len(self.hv) else 0.0

    @property
    def accuracy_floor(self) -> float | None:
        """The lowest validation accuracy within the study's drop budget."""
        drop = self.settings.get("budget", {}).get("max_accuracy_drop")
        if drop is None or self.teacher is None:
            return None
        return float(self.teacher["accuracy"]) - drop / 100.0

    def budget(self, key: str) -> float | None:
        value = self.settings.get("budget", {}).get(key)
        return float(value) if value is not None else None

    def counts(self) -> dict[str, int]:
        t = self.trials
        return {
            "trials": len(t),
            "complete": int((t["state"] == "COMPLETE").sum()),
            "feasible": int(t["feasible"].astype(bool).sum()),
            "failed": int((t["state"] == "FAIL").sum()),
            "pruned": int((t["state"] == "PRUNED").sum()),
            "front": len(self.front),
        }

    def wall_time_s(self) -> float:
        starts = [t.datetime_start for t in self.stored.study.get_trials(deepcopy=False)]
        ends = [t.datetime_complete for t in self.stored.study.get_trials(deepcopy=False)]
        s = [x for x in starts if x is not None]
        e = [x for x in ends if x is not None]
        return (max(e) - min(s)).total_seconds() if s and e else math.nan


# ---------------------------------------------------------------- building


def _with_attrs(df: pd.DataFrame, study: optuna.Study, names: Sequence[str]) -> pd.DataFrame:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    df = df.copy()
    for name in names:
        if name not in df.columns:
            df[name] = [trials[n].user_attrs.get(name, math.nan) for n in df["trial"]]
    return df


def knee_trial(front: pd.DataFrame, objectives: Sequence[str]) -> int | None:
    """The front's suggested knee over ``objectives`` (costs on a log scale), or ``None``."""
    if front.empty:
        return None
    names = list(objectives)
    points = front[names].astype(float).to_numpy()
    logs = [n != "accuracy" for n in names]  # bytes, ms and BOPs: ratios matter
    return int(front["trial"].iloc[knee_index(points, directions(names), log_scale=logs)])


def _layer_order(study: optuna.Study) -> list[str]:
    for t in study.get_trials(deepcopy=False):
        layers = [k.split(".", 1)[1] for k in t.distributions if k.startswith("bits.")]
        if layers:
            return layers
    return []


def policy_tables(front: pd.DataFrame, layers: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per family of per-layer settings (``bits``, ``prune``, ...): front trials x layers.

    Read from each trial's stored configuration, so families that later releases add to
    ``CompressionConfig`` (any mapping of layer name to a number) show up without change.
    """
    configs: dict[int, dict[str, Any]] = {}
    for _, row in front.iterrows():
        raw = row.get("config")
        data: dict[str, Any] = {}
        if isinstance(raw, str):
            data = json.loads(raw)
        else:  # trials from a run that stored no config: read the parameters
            for col, value in row.items():
                fam, _, layer = str(col).partition(".")
                if fam in POLICY_DEFAULTS and layer and pd.notna(value):
                    data.setdefault(fam, {})[layer] = value
        configs[int(row["trial"])] = data
    families = [f for f in POLICY_DEFAULTS if any(f in c for c in configs.values())]
    for c in configs.values():
        families += [k for k, v in c.items() if isinstance(v, Mapping) and k not in families and v]
    tables: dict[str, pd.DataFrame] = {}
    for fam in families:
        cols = list(layers) or sorted({k for c in configs.values() for k in c.get(fam, {})})
        extra = sorted({k for c in configs.values() for k in c.get(fam, {})} - set(cols))
        default = POLICY_DEFAULTS.get(fam, math.nan)
        tables[fam] = pd.DataFrame(
            [
                [float(c.get(fam, {}).get(layer, default)) for layer in [*cols, *extra]]
                for c in configs.values()
            ],
            index=pd.Index(list(configs), name="trial"),
            columns=[*cols, *extra],
        )
    return tables


def _summary(row: pd.Series) -> str:
    from search.objective import describe
    from spaces import CompressionConfig

    raw = row.get("config")
    try:
        if isinstance(raw, str):
            return describe(CompressionConfig.from_json(raw))
    except ValueError:
        pass
    return str(row.get("student", ""))


def build_report(stored: StoredStudy, *, remeasure: bool = True) -> StudyReport:
    """Read a study's trials and compute what its report shows.

    Args:
        stored: The opened study.
        remeasure: Re-measure front points (and the teacher) on the test split when the run
            stored no test figures; ``False`` falls back to validation accuracy.
    """
    study = stored.study
    trials = _with_attrs(trials_frame(study), study, EXTRA_ATTRS)
    if "student" not in trials:
        trials["student"] = ""
    front = front_frame(trials).copy()
    teacher_rows = trials[(trials["baseline"] == "teacher") & (trials["state"] == "COMPLETE")]
    teacher = teacher_rows.iloc[0] if len(teacher_rows) else None
    done = trials[trials["state"] == "COMPLETE"]
    baselines = done[done["baseline"].astype(str) != ""]
    wanted = [int(n) for n in front["trial"]] + [int(n) for n in baselines["trial"]]
    figures = held_out_figures(stored, wanted, remeasure=remeasure)
    for col in TEST_COLUMNS:
        values = {n: figures.frame.loc[n, col] for n in figures.frame.index}
        trials[col] = [values.get(int(n), trials.loc[i, col]) for i, n in trials["trial"].items()]
        front[col] = [values.get(int(n), math.nan) for n in front["trial"]]
    if teacher is not None:
        teacher = trials[trials["trial"] == teacher["trial"]].iloc[0]
    front["summary"] = [_summary(r) for _, r in front.iterrows()]
    objectives = study_objectives(study)
    knee = knee_trial(front, objectives)
    front["knee"] = front["trial"] == knee
    env = study.user_attrs.get(ENV_ATTR, {})
    settings = stored.spec.to_dict() if stored.spec is not None else {}
    return StudyReport(
        name=study.study_name,
        stored=stored,
        trials=trials,
        front=front,
        teacher=teacher,
        hv=hypervolume_curve(trials, objectives),
        knee_trial=knee,
        test_note=figures.note,
        policies=policy_tables(front, _layer_order(study)),
        environment=dict(env) if isinstance(env, Mapping) else {},
        settings=settings,
        objectives=objectives,
    )


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote."""

    html: Path
    markdown: Path
    pngs: tuple[Path, ...]


def write_report(reports: Sequence[StudyReport], dest: Path, *, png: bool = True) -> ReportFiles:
    """Write ``report.html``, ``report.md`` and (unless ``png`` is false) ``report-*.png``."""
    from search import report_html, report_markdown, report_png

    if not reports:
        raise ValueError("'reports' must hold at least one study report. Got none instead.")
    dest.mkdir(parents=True, exist_ok=True)
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pngs = report_png.write_pngs(reports, dest) if png else ()
    html_path = dest / "report.html"
    html_path.write_text(report_html.render(reports, generated=generated), encoding="utf-8")
    md_path = dest / "report.md"
    md_path.write_text(
        report_markdown.render(reports, generated=generated, pngs=[p.name for p in pngs]),
        encoding="utf-8",
    )
    return ReportFiles(html_path, md_path, tuple(pngs))


# ---------------------------------------------------------------- shared formatting


def fmt_pct(x: object, digits: int = 2) -> str:
    return f"{100 * float(x):.{digits}f}%" if _num(x) else "-"  # type: ignore[arg-type]


def fmt_interval(low: object, high: object) -> str:
    if _num(low) and _num(high):
        return f"[{100 * float(low):.1f}, {100 * float(high):.1f}]"  # type: ignore[arg-type]
    return ""


def _num(x: object) -> bool:
    return isinstance(x, (int, float, np.number)) and math.isfinite(float(x))


def table_rows(report: StudyReport) -> pd.DataFrame:
    """The front, most accurate first, then the baselines that are not on it (for reference)."""
    done = report.trials[report.trials["state"] == "COMPLETE"]
    off = done[(done["baseline"].astype(str) != "") & ~done["front"].astype(bool)].copy()
    off["summary"] = [_summary(r) for _, r in off.iterrows()]
    off["knee"] = False
    return pd.concat([report.front, off], ignore_index=True) if len(off) else report.front


def front_table(report: StudyReport) -> pd.DataFrame:
    """:func:`table_rows` as people read them (strings)."""
    teacher_size = float(report.teacher["size_bytes"]) if report.teacher is not None else math.nan
    rows = []
    for _, r in table_rows(report).iterrows():
        test = fmt_pct(r["test_accuracy"])
        interval = fmt_interval(r["test_accuracy_low"], r["test_accuracy_high"])
        base = str(r["baseline"] or "")
        if base and not r["front"]:
            base += (
                " (baseline, not on the front" + ("" if r["feasible"] else ", over budget") + ")"
            )
        marks = [m for m in (base, "knee" if r["knee"] else "") if m]
        rows.append(
            {
                "trial": int(r["trial"]),
                "mark": ", ".join(marks),
                "val acc": fmt_pct(r["accuracy"]),
                "test acc [95% CI]": f"{test} {interval}".strip(),
                "size (B)": f"{r['size_bytes']:,.0f}",
                "smaller": f"{teacher_size / r['size_bytes']:.1f}x" if teacher_size > 0 else "-",
                "latency (ms)": f"{r['latency_ms']:.3f}",
                "BOPs": f"{r['bops']:.3g}" if _num(r.get("bops")) else "-",
                "student": str(r.get("student", "")),
                "compression": r["summary"],
            }
        )
    table = pd.DataFrame(rows)
    if len(table) and (table["BOPs"] == "-").all():
        table = table.drop(columns="BOPs")
    return table


def environment_rows(report: StudyReport) -> list[tuple[str, str]]:
    """(label, value) pairs describing the machine, versions and settings."""
    env, s = report.environment, report.settings
    rows: list[tuple[str, str]] = []
    if env:
        versions = env.get("versions", {})
        rows += [
            ("created", str(env.get("created_utc", "-"))),
            ("CPU", f"{env.get('cpu', '-')} ({env.get('cpu_count', '-')} logical CPUs)"),
            ("platform", str(env.get("platform", "-"))),
            ("Python", str(env.get("python", "-"))),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
            ("torch threads", str(env.get("torch_threads", "-"))),
            ("latency runtime", str(env.get("latency_runtime", "-"))),
        ]
    else:
        rows.append(("environment", "not recorded (study made by an older release)"))
    if s:
        st = s["study"]
        lat = s["latency"]
        rows += [
            ("task", str(s.get("task"))),
            ("seed", str(st.get("seed"))),
            ("sampler", str(st.get("sampler"))),
            ("objectives", ", ".join(report.objectives)),
            ("trials asked", str(st.get("n_trials"))),
            (
                "latency",
                f"batch {lat.get('batch_size')}, {lat.get('threads')} thread(s), "
                f"{lat.get('warmup')} warm-up + {lat.get('repeats')} timed runs, median",
            ),
            ("budget", ", ".join(f"{k} = {v}" for k, v in s["budget"].items() if v is not None)),
        ]
    wall = report.wall_time_s()
    if math.isfinite(wall):
        rows.append(
            ("study wall time", f"{wall:,.0f} s from the first trial's start to the last's end")
        )
    rows += [
        ("storage", report.stored.storage_url),
        ("results folder", str(report.stored.results_dir)),
    ]
    return rows
