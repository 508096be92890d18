"""The report's Markdown summary: the same facts as the HTML page, as text."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from search.quality import REFERENCE as HV_REFERENCE
from search.report.data import StudyReport
from search.report.sensitivity import cost_text
from search.report.tables import (
    best_accuracy,
    bits_label,
    environment_rows,
    family_note,
    family_table,
    fmt_pct,
    front_table,
    has_warm_starts,
    knee_method,
    knee_row,
    knee_techniques,
    knee_test_text,
    latency_text,
    sensitivity_rows,
    warm_front_text,
)

#: PNG name endings drawn in their own sections, not with the study's plots at the top.
_OWN_SECTION = ("-families.png", "-sensitivity.png")


def md_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (cells as strings, pipes escaped)."""
    if df.empty:
        return "_(empty)_"

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in df.columns) + " |",
        "| " + " | ".join("---" for _ in df.columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _policy_md(report: StudyReport) -> str:
    if not report.policies:
        return "_(no per-layer settings recorded)_"
    first = next(iter(report.policies.values()))
    layers = list(first.columns)
    rows = []
    for trial in first.index:
        row: dict[str, str] = {"trial": str(trial)}
        for layer in layers:
            parts = []
            for fam, table in report.policies.items():
                v = table.loc[trial].get(layer, math.nan)
                if isinstance(v, float) and math.isnan(v):
                    continue
                if fam == "bits":
                    parts.append(bits_label(v))
                else:
                    parts.append(f"{fam} {v:.2f}" if v else "")
            row[layer] = " ".join(p for p in parts if p)
        rows.append(row)
    return md_table(pd.DataFrame(rows))


def _families_md(report: StudyReport, pngs: Sequence[str]) -> list[str]:
    out = ["### Which technique", "", family_note(report), ""]
    out += [md_table(family_table(report)), ""]
    out += [f"![{n}]({n})" for n in pngs if n.endswith("-families.png")]
    return [*out, ""]


def _sensitivity_md(report: StudyReport, pngs: Sequence[str]) -> list[str]:
    model = report.sensitivity_model
    if model is None:
        return []
    out = [
        f"### Per-layer sensitivity ({model})",
        "",
        f"Measured before the search: {cost_text(report.sensitivity_tables)}. One layer "
        "changed at a time; most sensitive layers first.",
        "",
        md_table(sensitivity_rows(report, model)),
        "",
    ]
    out += [f"![{n}]({n})" for n in pngs if n.endswith("-sensitivity.png")]
    return [*out, ""]


def _study_md(report: StudyReport, pngs: Sequence[str]) -> list[str]:
    c = report.counts()
    out = [
        f"## Study `{report.name}`",
        "",
        f"{c['trials']} trials ({c['complete']} complete, {c['failed']} failed, "
        f"{c['pruned']} pruned), {c['feasible']} feasible, {c['front']} on the front. "
        f"Objectives: {', '.join(report.objectives)}. "
        f"Hypervolume (normalised): **{report.hypervolume:.4f}**.",
        "",
    ]
    out += [f"![{name}]({name})" for name in pngs if not name.endswith(_OWN_SECTION)]
    out += ["", "### Pareto front", "", report.test_note, ""]
    if has_warm_starts(report):
        out += [warm_front_text(report), ""]
    out += [md_table(front_table(report)), ""]
    k = knee_row(report)
    if k is not None:
        test = knee_test_text(k)
        out += [
            "### Suggested knee point",
            "",
            f"Trial **{report.knee_trial}** ({k['summary']}): validation "
            f"{fmt_pct(k['accuracy'])}{test}, {k['size_bytes']:,.0f} B, "
            f"{latency_text(k)} ms. Techniques: {knee_techniques(report)}.",
            "",
        ]
    out += _families_md(report, pngs)
    out += _sensitivity_md(report, pngs)
    out += ["### Per-layer policies of the front", "", _policy_md(report), ""]
    out += ["### Environment", ""]
    out += [f"- **{k}**: {v}" for k, v in environment_rows(report)]
    out.append("")
    return out


def render(reports: Sequence[StudyReport], *, generated: str, pngs: Sequence[str]) -> str:
    """The whole summary."""
    names = ", ".join(f"`{r.name}`" for r in reports)
    out = [
        f"# frontier report: {names}",
        "",
        f"Generated {generated}. Open `report.html` for the interactive plots.",
        "",
    ]
    if len(reports) > 1:
        rows = [
            {
                "study": r.name,
                "sampler": r.settings.get("study", {}).get("sampler", "-"),
                "objectives": ", ".join(r.objectives),
                "trials": r.counts()["trials"],
                "feasible": r.counts()["feasible"],
                "front": r.counts()["front"],
                "hypervolume": f"{r.hypervolume:.4f}",
                "best val acc": best_accuracy(r),
                "CPU": r.environment.get("cpu", "-"),
            }
            for r in reports
        ]
        out += ["## Studies compared", "", md_table(pd.DataFrame(rows)), ""]
        out += [f"![{n}]({n})" for n in pngs if "compare" in n]
        out.append("")
    for r in reports:
        own = [n for n in pngs if n.startswith(f"report-{r.name}-")]
        out += _study_md(r, own)
    ref = HV_REFERENCE
    knee = knee_method()
    out += [
        "## Methods",
        "",
        "- Front: feasible trials that no other feasible trial beats on the study's objectives "
        "together (validation accuracy, size and latency unless the study chose others). Test "
        "accuracy: held-out split, 95% bootstrap interval; reported only, never ranked on.",
        "- Latency: the final figure, the front and the baselines re-timed side by side at the "
        "end of the run (interleaved rounds, quiet timing; median over rounds and its spread); "
        "`*` marks a search-time figure. Ratios against the teacher and the knee use it.",
        "- Hypervolume: the study's objectives divided by the study's teacher's, against the "
        f"fixed reference (accuracy {ref['accuracy']}, size {ref['size_bytes']}, latency "
        f"{ref['latency_ms']}, BOPs {ref['bops']} of the teacher's; only the study's objectives "
        "count), over the feasible front (as `frontier status`); studies with different "
        "objectives do not compare by it.",
        f"- Knee: {knee}",
        "",
    ]
    return "\n".join(out)
