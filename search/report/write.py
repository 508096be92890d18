"""``frontier report``'s files: the HTML page, the Markdown summary and the PNGs."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from search.report import html, markdown
from search.report import png as _png  # `png` is also write_report's flag
from search.report.data import StudyReport


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote."""

    html: Path
    markdown: Path
    pngs: tuple[Path, ...]


def write_report(reports: Sequence[StudyReport], dest: Path, *, png: bool = True) -> ReportFiles:
    """Write ``report.html``, ``report.md`` and (unless ``png`` is false) ``report-*.png``."""
    if not reports:
        raise ValueError("'reports' must hold at least one study report. Got none instead.")
    dest.mkdir(parents=True, exist_ok=True)
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pngs = _png.write_pngs(reports, dest) if png else ()
    html_path = dest / "report.html"
    html_path.write_text(html.render(reports, generated=generated), encoding="utf-8")
    md_path = dest / "report.md"
    md_path.write_text(
        markdown.render(reports, generated=generated, pngs=[p.name for p in pngs]),
        encoding="utf-8",
    )
    return ReportFiles(html_path, md_path, tuple(pngs))
