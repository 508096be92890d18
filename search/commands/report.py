"""``frontier report``: an HTML + Markdown report of one study, or a comparison of several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def report_command(
    studies: Sequence[str] = (),
    *,
    storage: str | None = None,
    names: Sequence[str] = (),
    out: Path | None = None,
    remeasure: bool = True,
    dest: Path | None = None,
    png: bool = True,
) -> int:
    """Write ``report.html``, ``report.md`` and PNGs; exit code 0.

    Args:
        studies: Study files, results folders or storage files.
        storage: An Optuna storage URL holding the studies in ``names``.
        names: Study names in ``storage``.
        out: The results folder the run was given (``--out``), for every study named.
        remeasure: Compute the final figures (side-by-side latency, test split) the run did
            not store, rebuilding the candidates.
        dest: The report folder; default: the study's results folder, or for several
            studies a ``compare-<a>-vs-<b>`` folder beside theirs.
        png: Also write static PNG plots.

    Raises:
        StudyFileError: a study cannot be named or opened.
    """
    from search.report import build_report, write_report
    from search.stored import open_many

    opened = open_many(studies, storage=storage, names=names, out=out)
    reports = []
    for stored in opened:
        print(f"frontier: reading study {stored.name!r} ({stored.storage_url}) ...", flush=True)
        reports.append(build_report(stored, remeasure=remeasure))
        print(f"frontier: {reports[-1].test_note}")
    if dest is None:
        if len(reports) == 1:
            dest = opened[0].results_dir
        else:
            name = "compare-" + "-vs-".join(r.name for r in reports)
            shared = len({o.results_dir for o in opened}) == 1
            # beside the studies' own results folders (studies/results/<name>), or inside
            # the one folder they share
            dest = (opened[0].results_dir if shared else opened[0].results_dir.parent) / name
    files = write_report(reports, dest.resolve(), png=png)
    for r in reports:
        knee = f"knee: trial {r.knee_trial}" if r.knee_trial is not None else "empty front"
        print(
            f"frontier: {r.name}: {r.counts()['front']} front points, hypervolume "
            f"{r.hypervolume:.4f}, {knee}"
        )
    print(f"frontier: wrote {files.html}, {files.markdown} and {len(files.pngs)} PNG(s).")
    return 0
