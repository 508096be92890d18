"""A report's numbers as people read them: formatting, the front table, the knee's row and
the environment rows. Plain strings and DataFrames, shared by every renderer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from search.knee import __doc__ as KNEE_DOC
from search.report.data import StudyReport, config_summary
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
                "search latency (ms)": f"{r['latency_ms']:.3f}",
                "BOPs": f"{r['bops']:.3g}" if is_number(r.get("bops")) else "-",
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
