"""The report as one self-contained HTML page: plotly.js inlined once, nothing fetched."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from search.quality import REFERENCE as HV_REFERENCE
from search.report import figures as rf
from search.report import technique_figures as tf
from search.report.data import StudyReport
from search.report.sensitivity import cost_text
from search.report.tables import (
    best_accuracy,
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
    table_rows,
    warm_front_text,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #223; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; color: #ccd; font-size: 13px; }
main { max-width: 1200px; margin: 0 auto; padding: 12px 32px 48px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 12px 20px;
          margin: 16px 0; }
h2 { font-size: 18px; margin: 8px 0 12px; }
h3 { font-size: 15px; margin: 12px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px;
        background: #fcfcff; }
.card b { display: block; font-size: 20px; }
.card span { color: #666; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f6; position: sticky; top: 0; }
td.l, th.l { text-align: left; white-space: normal; }
tr.knee td { background: #fff6d6; }
tr.baseline td { color: #1b6e1b; }
.note { color: #555; font-size: 13px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 13px; }
dt { color: #666; } dd { margin: 0; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
nav a { margin-right: 14px; font-size: 13px; }
"""

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _figure(fig: go.Figure, div_id: str) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=div_id,
            config=_PLOT_CONFIG,
        )
    )


def _e(text: object) -> str:
    return html.escape(str(text))


#: Columns of text, aligned left.
_LEFT = {"mark", "student", "techniques", "warm start", "compression", "family", "layer"}


def _plain_table(table: pd.DataFrame) -> str:
    """A table of strings, every row alike."""
    cls = {c: "l" if c in _LEFT else "" for c in table.columns}
    head = "".join(f'<th class="{cls[c]}">{_e(c)}</th>' for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls[c]}">{_e(v)}</td>' for c, v in row.items()) + "</tr>"
        for _, row in table.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table(report: StudyReport) -> str:
    table = front_table(report)
    if table.empty:
        return "<p>The front is empty: no feasible trial. Loosen the budget or run more trials.</p>"
    left = _LEFT
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in table.columns)
    body = []
    for (_, row), (_, src) in zip(table.iterrows(), table_rows(report).iterrows(), strict=True):
        cls = " ".join(
            c for c in ("knee" if src["knee"] else "", "baseline" if src["baseline"] else "") if c
        )
        cells = "".join(
            f'<td class="{"l" if c in left else ""}">{_e(v)}</td>' for c, v in row.items()
        )
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cards(report: StudyReport) -> str:
    c = report.counts()
    items = [
        (f"{c['trials']}", f"trials ({c['complete']} complete, {c['failed']} failed)"),
        (f"{c['feasible']}", "feasible"),
        (f"{c['front']}", "front points"),
        (f"{report.hypervolume:.4f}", "hypervolume (normalised)"),
    ]
    if report.teacher is not None:
        t = report.teacher
        items.append((fmt_pct(t["accuracy"]), "teacher val accuracy"))
        items.append((f"{t['size_bytes']:,.0f} B", "teacher size"))
    k = knee_row(report)
    if k is not None:
        items.append(
            (f"#{report.knee_trial}", f"knee: {fmt_pct(k['accuracy'])}, {k['size_bytes']:,.0f} B")
        )
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for v, label in items
        )
        + "</div>"
    )


def _knee_text(report: StudyReport) -> str:
    k = knee_row(report)
    if k is None:
        return "<p>No knee: the front is empty.</p>"
    test = knee_test_text(k)
    return (
        f"<p><b>Suggested knee: trial {report.knee_trial}</b> ({_e(k['summary'])}): validation "
        f"{fmt_pct(k['accuracy'])}{_e(test)}, {k['size_bytes']:,.0f} B, {_e(latency_text(k))} ms. "
        f"Techniques: <b>{_e(knee_techniques(report))}</b>. "
        "Select it with <code>frontier export STUDY --trial "
        f"{report.knee_trial}</code>.</p>"
    )


def _study_section(report: StudyReport, idx: int, *, single: bool) -> str:
    sid = f"s{idx}"
    env = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in environment_rows(report))
    settings = json.dumps(report.settings, indent=2, default=str) if report.settings else "{}"
    parts = [
        f'<section id="{sid}"><h2>Study {_e(report.name)}</h2>',
        _cards(report),
        "<h3>Pareto front (feasible trials; validation accuracy chose it) and baselines</h3>",
        f'<p class="note">Objectives: {_e(", ".join(report.objectives))}. '
        f"{_e(report.test_note)} Baselines are green; the knee row is highlighted.</p>",
        *(
            [f'<p class="note">{_e(warm_front_text(report))}</p>']
            if has_warm_starts(report)
            else []
        ),
        _table(report),
        _knee_text(report),
        "</section>",
        f'<section><h2>Plots: {_e(report.name)}</h2><div class="grid2">',
        _figure(rf.accuracy_vs(report, "size_bytes"), f"{sid}-acc-size"),
        _figure(rf.accuracy_vs(report, "latency_ms"), f"{sid}-acc-latency"),
        *(
            [_figure(rf.accuracy_vs(report, "bops"), f"{sid}-acc-bops")]
            if "bops" in report.objectives
            else []
        ),
        "</div>",
        _figure(rf.objectives_together(report), f"{sid}-objectives"),
        _figure(rf.parallel_objectives(report), f"{sid}-parallel"),
    ]
    if single:
        parts.append(_figure(rf.hypervolume_figure([report]), f"{sid}-hv"))
    parts += [
        "</section>",
        f"<section><h2>Which technique: {_e(report.name)}</h2>",
        f'<p class="note">{_e(family_note(report))}</p>',
        _plain_table(family_table(report)),
        _figure(tf.family_figure(report), f"{sid}-families"),
        "</section>",
        *_sensitivity_section(report, sid),
        f"<section><h2>Per-layer policies of the front: {_e(report.name)}</h2>",
        '<p class="note">Bits per layer (fp32 = kept float) and the share of each layer\'s '
        "weights pruned, one row per front point, most accurate first.</p>",
        _figure(rf.policy_figure(report), f"{sid}-policy"),
        "</section>",
        f"<section><h2>Environment: {_e(report.name)}</h2><dl>{env}</dl>",
        f"<details><summary>Study settings</summary><pre>{_e(settings)}</pre></details>",
        "</section>",
    ]
    return "\n".join(parts)


def _sensitivity_section(report: StudyReport, sid: str) -> list[str]:
    model = report.sensitivity_model
    if model is None:
        return []
    return [
        f"<section><h2>Per-layer sensitivity ({_e(model)}): {_e(report.name)}</h2>",
        f'<p class="note">Measured before the search: {_e(cost_text(report.sensitivity_tables))}. '
        "One layer changed at a time; most sensitive layers first. Colour: the metric drop in "
        "points where measured, else log10 of the output distortion (a gradient estimate).</p>",
        _plain_table(sensitivity_rows(report, model)),
        _figure(tf.sensitivity_figure(report.sensitivity, model), f"{sid}-sensitivity"),
        "</section>",
    ]


def _compare_section(reports: Sequence[StudyReport]) -> str:
    rows = []
    for r in reports:
        c = r.counts()
        best = best_accuracy(r)
        smallest = f"{r.front['size_bytes'].min():,.0f}" if len(r.front) else "-"
        sampler = r.settings.get("study", {}).get("sampler", "-")
        rows.append(
            f"<tr><td class='l'>{_e(r.name)}</td><td>{_e(sampler)}</td>"
            f"<td class='l'>{_e(', '.join(r.objectives))}</td>"
            f"<td>{c['trials']}</td><td>{c['feasible']}</td><td>{c['front']}</td>"
            f"<td>{r.hypervolume:.4f}</td><td>{best}</td><td>{smallest}</td>"
            f"<td class='l'>{_e(r.environment.get('cpu', '-'))}</td></tr>"
        )
    head = (
        "<tr><th class='l'>study</th><th>sampler</th><th class='l'>objectives</th>"
        "<th>trials</th><th>feasible</th>"
        "<th>front</th><th>hypervolume</th><th>best val acc</th><th>smallest front (B)</th>"
        "<th class='l'>CPU</th></tr>"
    )
    return "\n".join(
        [
            '<section id="compare"><h2>Studies compared</h2>',
            f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>",
            '<div class="grid2">',
            _figure(rf.compare_fronts(reports, "size_bytes"), "cmp-acc-size"),
            _figure(rf.compare_fronts(reports, "latency_ms"), "cmp-acc-latency"),
            *(
                [_figure(rf.compare_fronts(reports, "bops"), "cmp-acc-bops")]
                if any("bops" in r.objectives for r in reports)
                else []
            ),
            "</div>",
            *(
                []
                if len({r.objectives for r in reports}) == 1
                else [
                    '<p class="note">These studies optimise different objectives: their '
                    "hypervolumes measure different things and do not compare.</p>"
                ]
            ),
            _figure(rf.hypervolume_figure(reports), "cmp-hv"),
            "</section>",
        ]
    )


def _methods() -> str:
    ref = HV_REFERENCE
    knee = knee_method()
    return (
        '<section id="methods"><h2>How to read this report</h2><ul class="note">'
        "<li>The search scores candidates on the validation split; the front is the set of "
        "feasible trials (within every budget) that no other feasible trial beats on the "
        "study's objectives together (accuracy, size and latency unless the study chose "
        "others, with BOPs among them). Test accuracy is measured on a held-out "
        "split and shown with a 95% bootstrap interval (2,000 resamples).</li>"
        "<li>Hypervolume: the study's objectives each divided by the study's own "
        f"teacher's, against the fixed reference point (accuracy {ref['accuracy']}, size "
        f"{ref['size_bytes']}, latency {ref['latency_ms']}, BOPs {ref['bops']} of the "
        "teacher's; only the study's objectives count), over the "
        "feasible front; the same figure as <code>frontier status</code>. Every study shares "
        "this reference, so studies on different machines compare by relative gains.</li>"
        f"<li>Knee: {_e(knee)}</li>"
        "<li>Size is the length of the packed safetensors artifact. Latency is the final "
        "figure: the front and the baselines re-timed side by side at the end of the run "
        "(interleaved rounds, the study's runtime, threads and batch, quiet timing), the "
        "median over rounds with its spread; a figure marked * is the search-time timing "
        "(timed once, when the trial ran). Ratios against the teacher and the knee use the "
        "final figures; the front itself and the hypervolume were found on the search-time "
        "ones. Test accuracy is reported only: nothing is ranked or filtered on it.</li>"
        "</ul></section>"
    )


def render(reports: Sequence[StudyReport], *, generated: str) -> str:
    """The whole page."""
    names = ", ".join(r.name for r in reports)
    single = len(reports) == 1
    nav = "".join(f'<a href="#s{i}">{_e(r.name)}</a>' for i, r in enumerate(reports))
    if not single:
        nav = '<a href="#compare">comparison</a>' + nav
    body = [] if single else [_compare_section(reports)]
    body += [_study_section(r, i, single=single) for i, r in enumerate(reports)]
    plotly_js = plotly.offline.get_plotlyjs()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>frontier report: {_e(names)}</title>",
            f"<style>{_CSS}</style>",
            f'<script type="text/javascript">{plotly_js}</script>',
            "</head><body>",
            f"<header><h1>frontier report: {_e(names)}</h1>"
            f"<p>Generated {_e(generated)}. Self-contained: opens offline.</p></header>",
            f"<main><nav>{nav}<a href='#methods'>methods</a></nav>",
            *body,
            _methods(),
            "</main></body></html>",
        ]
    )
