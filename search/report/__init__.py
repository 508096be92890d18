"""A study (or several) as a report: the data behind it and the files it writes.

``frontier report STUDY [STUDY ...]`` writes, into one folder:

- ``report.html``: one self-contained page (plotly.js inlined once; no network needed):
  the front as a table, interactive plots, hypervolume, the knee point and the techniques it
  combines, "which technique" (the front each technique family reaches alone beside the
  joint front, :mod:`search.families`), the per-layer sensitivity when the study measured
  it (:mod:`.sensitivity`), per-layer policies and the environment; with several studies,
  their fronts overlaid first;
- ``report.md``: the same facts in Markdown, linking
- ``report-*.png``: static plots (matplotlib) for papers and slides.

The data and the drawing are apart, as in Optuna's visualization: :mod:`.data` reads the
stored study into a :class:`StudyReport`, :mod:`.tables` and :mod:`.plot_data` turn it into
rows and plot data; :mod:`.figures` and :mod:`.technique_figures` (plotly), :mod:`.html`,
:mod:`.markdown` and :mod:`.png` (matplotlib) only draw it, and :mod:`.write` writes the files.
"""

from __future__ import annotations

from search.quality import hypervolume_curve
from search.report.data import StudyReport, build_report, knee_trial, policy_tables
from search.report.tables import environment_rows, fmt_interval, fmt_pct, front_table, table_rows
from search.report.write import ReportFiles, write_report

__all__ = [
    "ReportFiles",
    "StudyReport",
    "build_report",
    "environment_rows",
    "fmt_interval",
    "fmt_pct",
    "front_table",
    "hypervolume_curve",
    "knee_trial",
    "policy_tables",
    "table_rows",
    "write_report",
]
