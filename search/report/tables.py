"""A report's numbers as people read them: formatting, the front table, the knee's row and
the environment rows. Plain strings and DataFrames, shared by every renderer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from search.families import absent_families
from search.knee import __doc__ as KNEE_DOC
from search.report.data import StudyReport, config_summary
from search.report.sensitivity import sensitivity_table
from search.status import latency_wait_text


def fmt_pct(x: object, digits: int = 2) -> str:
    """A fraction as a percentage (``0.9712`` -> ``97.12%``); ``-`` when not a finite number."""
    return f"{100 * float(x):.{digits}f}%" if is_number(x) else "-"  # type: ignore[arg-type]


def fmt_interval(low: object, high: object) -> str:
    """A confidence interval of fractions in percent (``[96.1, 98.0]``), or ``""``."""
    if is_number(low) and is_number(high):
        return f"[{100 * float(low):.1f}, {100 * float(high):.1f}]"  # type: ignore[arg-type]
    return ""


def is_number(x: object) -> bool:
    """Whether ``x`` is a finite number (not NaN, not a string)."""
    return isinstance(x, (int, float, np.number)) and math.isfinite(float(x))


def bits_label(v: float, unit: str = "b") -> str:
    """A layer's bit width as shown: ``fp32``, ``fp16`` or ``4b``; ``""`` when unknown."""
    if math.isnan(v):
        return ""
    return "fp32" if v >= 32 else "fp16" if v >= 16 else f"{int(v)}{unit}"


def knee_row(report: StudyReport) -> pd.Series | None:
    """The suggested knee point's front row, or ``None`` for an empty front."""
    if report.knee_trial is None:
        return None
    return report.front[report.front["trial"] == report.knee_trial].iloc[0]


def knee_test_text(knee: pd.Series) -> str:
    """``", test 97.12% [96.1, 98.0]"`` for a knee with test figures, else ``""``."""
    if not is_number(knee["test_accuracy"]):
        return ""
    interval = fmt_interval(knee["test_accuracy_low"], knee["test_accuracy_high"])
    return f", test {fmt_pct(knee['test_accuracy'])} {interval}"


def quoted_ms(row: pd.Series) -> float:
    """A row's quoted latency: its final side-by-side figure, else the search-time one."""
    final = row.get("final_latency_ms")
    return float(final) if is_number(final) else float(row["latency_ms"])


def latency_text(row: pd.Series) -> str:
    """``"0.412 (spread 6%)"``: the final figure and how much it moved between rounds; or
    the search-time figure marked ``*`` when the row has no final one."""
    if not is_number(row.get("final_latency_ms")):
        return f"{float(row['latency_ms']):.3f}*"
    spread = row.get("final_latency_spread")
    tail = f" (spread {100 * float(spread):.0f}%)" if is_number(spread) else ""
    return f"{float(row['final_latency_ms']):.3f}{tail}"


def knee_method() -> str:
    """How the knee is chosen, in one paragraph (from :mod:`search.knee`)."""
    return " ".join((KNEE_DOC or "").split("\n\n", 1)[-1].split())


def best_accuracy(report: StudyReport) -> str:
    """The front's best validation accuracy, or ``-`` for an empty front."""
    return fmt_pct(report.front["accuracy"].max()) if len(report.front) else "-"


def table_rows(report: StudyReport) -> pd.DataFrame:
    """The front, most accurate first, then the baselines that are not on it (for reference)."""
    done = report.trials[report.trials["state"] == "COMPLETE"]
    off = done[(done["baseline"].astype(str) != "") & ~done["front"].astype(bool)].copy()
    off["summary"] = [config_summary(r) for _, r in off.iterrows()]
    off["knee"] = False
    return pd.concat([report.front, off], ignore_index=True) if len(off) else report.front


def front_table(report: StudyReport) -> pd.DataFrame:
    """:func:`table_rows` as people read them (strings)."""
    teacher = report.teacher
    teacher_size = float(teacher["size_bytes"]) if teacher is not None else math.nan
    teacher_ms = quoted_ms(teacher) if teacher is not None else math.nan
    extras = extra_metrics(report.front)
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
                "latency (ms)": latency_text(r),
                "faster": f"{teacher_ms / quoted_ms(r):.2f}x" if teacher_ms > 0 else "-",
                **{
                    f"{split}{name}": f"{float(r[col]):.4g}" if is_number(r.get(col)) else "-"
                    for name in extras
                    for split, col in (("val ", name), ("test ", f"test_{name}"))
                },
                "search latency (ms)": f"{r['latency_ms']:.3f}",
                "BOPs": f"{r['bops']:.3g}" if is_number(r.get("bops")) else "-",
                "student": str(r.get("student", "")),
                "techniques": str(r.get("techniques", "")),
                "warm start": str(r.get("warm_start", "")),
                "compression": r["summary"],
            }
        )
    table = pd.DataFrame(rows)
    if len(table) and (table["BOPs"] == "-").all():
        table = table.drop(columns="BOPs")
    if len(table) and not has_warm_starts(report):
        table = table.drop(columns="warm start")
    return table


def extra_metrics(front: pd.DataFrame) -> list[str]:
    """The task's extra metrics in ``front`` (``perplexity``, ``nn_agreement``, ``kl``): the
    columns measured on both splits, ``name`` and ``test_name``, besides the metric itself."""
    return [
        c[5:]
        for c in front.columns
        if c.startswith("test_") and c[5:] in front.columns and c[5:] != "accuracy"
    ]


def has_warm_starts(report: StudyReport) -> bool:
    """Whether any trial of the study was a warm start (older studies have none)."""
    return bool((report.trials["warm_start"].astype(str) != "").any())


def warm_front_text(report: StudyReport) -> str:
    """How many front points came from sensitivity warm starts, in one sentence."""
    warm = int((report.front["warm_start"].astype(str) != "").sum())
    started = int((report.trials["warm_start"].astype(str) != "").sum())
    return (
        f"{warm} of the {len(report.front)} front points came from the {started} sensitivity "
        'warm starts (column "warm start": the allocation each came from).'
    )


def family_table(report: StudyReport) -> pd.DataFrame:
    """The technique families' table as people read it (strings): per family its trials,
    front points, hypervolume and best size / latency within the accuracy budget, with the
    trials that reach them and their ratios to the teacher."""
    teacher = report.teacher
    size = float(teacher["size_bytes"]) if teacher is not None else math.nan
    ms = quoted_ms(teacher) if teacher is not None else math.nan
    rows = []
    for _, f in report.families.iterrows():
        best_size, best_ms = f["best_size_bytes"], f["best_latency_ms"]
        rows.append(
            {
                "family": f["family"],
                "trials": int(f["trials"]),
                "front points": int(f["front"]),
                "hypervolume": f"{f['hypervolume']:.4f}" if is_number(f["hypervolume"]) else "-",
                "best size (B)": _best_text(best_size, f["best_size_trial"], ",.0f"),
                "smaller": f"{size / best_size:.1f}x" if is_number(best_size) and size > 0 else "-",
                "best latency (ms)": _best_text(best_ms, f["best_latency_trial"], ".3f"),
                "faster": f"{ms / best_ms:.2f}x" if is_number(best_ms) and ms > 0 else "-",
            }
        )
    return pd.DataFrame(rows)


def _best_text(value: float, trial: float, spec: str) -> str:
    """``"8,000 (#3)"``: a family's best figure and the trial reaching it, or ``-``."""
    if not is_number(value):
        return "-"
    return f"{float(value):{spec}} (#{int(trial)})"


def family_note(report: StudyReport) -> str:
    """How to read the family table, with the families left out for want of trials."""
    drop = report.settings.get("budget", {}).get("max_accuracy_drop")
    within = f"{drop:g} points" if drop is not None else "1 point (the study has no drop budget)"
    note = (
        "Each family's front is over its own trials and the teacher (the reference point of "
        "every family), on the study's objectives and validation accuracy; joint is every "
        f"trial. Best size and latency: feasible trials within {within} of the teacher's "
        "validation accuracy."
    )
    absent = absent_families(report.families) if len(report.families) else []
    if absent:
        note += f" Left out, no trial of their own: {', '.join(absent)}."
    return note


def knee_techniques(report: StudyReport) -> str:
    """The techniques the knee combines, in words, or ``""`` for an empty front."""
    k = knee_row(report)
    return str(k.get("techniques", "")) if k is not None else ""


def sensitivity_rows(report: StudyReport, model: str = "teacher", limit: int = 12) -> pd.DataFrame:
    """``model``'s per-layer sensitivity, most sensitive first, as people read it (strings;
    at most ``limit`` layers)."""
    table = sensitivity_table(report.sensitivity, model) if len(report.sensitivity) else None
    if table is None or table.empty:
        return pd.DataFrame()

    def drop(v: object) -> str:
        return f"{float(v):.2f}" if is_number(v) else "-"  # type: ignore[arg-type]

    def dist(v: object) -> str:
        return f"{float(v):.1e}" if is_number(v) else "-"  # type: ignore[arg-type]

    rows = []
    for _, r in table.head(limit).iterrows():
        bits = f"{int(r['bits'])}b" if is_number(r["bits"]) else "-"
        prune = f"{r['prune']:.2f}" if is_number(r["prune"]) else "-"
        rows.append(
            {
                "layer": r["layer"],
                "lowest bits": bits,
                "drop at them (points)": drop(r["bits_drop"]),
                "distortion at them": dist(r["bits_distortion"]),
                "most pruning": prune,
                "drop at it (points)": drop(r["prune_drop"]),
                "distortion at it": dist(r["prune_distortion"]),
                "mean drop (points)": drop(r["mean_drop"]),
            }
        )
    return pd.DataFrame(rows)


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
    if wait := latency_wait_text(report.trials):
        rows.append(("latency wait", f"{wait}, timing alone on the machine"))
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
