"""``frontier select``: the best front point under a budget, and why."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evaluators.budgets import LIMIT_BY_FIELD, Budget
from search.commands._common import EXIT_NOTHING_SELECTED, open_one
from search.spec import StudyFileError

if TYPE_CHECKING:
    from search.report import StudyReport
    from search.select import Selection
    from search.stored import StoredStudy


def select_command(
    study: str | None = None,
    *,
    budget: Budget | None = None,
    storage: str | None = None,
    names: Sequence[str] = (),
    out: Path | None = None,
    remeasure: bool = True,
) -> int:
    """Print the selected front point (with the techniques it combines), why, every point
    considered, and the front each technique family reaches alone (:mod:`search.families`).

    Args:
        study: A study file, results folder or storage file; ``None`` to name it by
            ``storage`` and ``names``.
        budget: The limits the point must meet (default: none).
        storage: An Optuna storage URL.
        names: The study's name in ``storage`` (exactly one study in all).
        out: The results folder the run was given (``--out``).
        remeasure: Compute the final figures (side-by-side latency, test split) the run did
            not store, rebuilding the candidates.

    Returns:
        0 when a point is selected, :data:`EXIT_NOTHING_SELECTED` when none meets the budget.

    Raises:
        StudyFileError: the study cannot be opened, its front is empty, or the budget needs
            a teacher the study lacks.
    """
    stored = open_one(study, storage=storage, names=names, out=out)
    report, selection, text = choose(stored, budget or Budget(), remeasure=remeasure)
    print(text)
    print()
    _print_candidates(selection)
    print()
    _print_families(report)
    return 0 if selection.chosen is not None else EXIT_NOTHING_SELECTED


def choose(
    stored: StoredStudy, budget: Budget, *, remeasure: bool = True
) -> tuple[StudyReport, Selection, str]:
    """Select under ``budget``: (the study's report, the selection, its explanation)."""
    from search.report import build_report
    from search.select import explain, select_point

    report = build_report(stored, remeasure=remeasure)
    if report.front.empty:
        raise StudyFileError(f"Study {stored.name!r} has an empty front: nothing to select.")
    teacher = report.teacher
    if teacher is None:
        if budget.max_accuracy_drop is not None:
            flag = LIMIT_BY_FIELD["max_accuracy_drop"].flag
            raise StudyFileError(
                f"Study {stored.name!r} has no teacher baseline trial; {flag} needs one."
            )
        reference = math.nan
    else:  # validation chooses: the drop is from the teacher's validation accuracy
        reference = float(teacher["accuracy"])
    selection = select_point(report.front, budget, reference_accuracy=reference)
    teacher_size = float(teacher["size_bytes"]) if teacher is not None else None
    return report, selection, explain(selection, teacher_size=teacher_size)


def _print_candidates(selection: Selection) -> None:
    t = selection.table.sort_values(["meets", "score"], ascending=[False, False])
    rows = []
    for _, r in t.iterrows():
        test = r.get("test_accuracy")
        shown = f"{100 * test:6.2f}%" if test is not None and pd.notna(test) else "     -"
        mark = "" if r["latency_basis"] == "final" else "*"
        rows.append(
            f"  {int(r['trial']):>5}  val {100 * r['score']:6.2f}%  test {shown}  "
            f"{r['size_bytes']:>9,.0f} B  {r['latency_ms']:7.3f} ms{mark:1}  "
            f"drop {r['drop_points']:5.2f}  {'meets' if r['meets'] else 'misses'}  {r['summary']}"
        )
    print(
        "Front points considered (ranked on validation; test reported only; latency: final "
        "side-by-side figure, * search-time):"
    )
    print("\n".join(rows))


def _print_families(report: StudyReport) -> None:
    from search.report.tables import family_note, family_table

    print("Which technique: the front each family reaches alone (validation accuracy):")
    table = family_table(report).astype(str)
    widths = {c: max([len(c), *table[c].str.len()]) for c in table.columns}

    def line(cells: Sequence[str]) -> str:
        # the family's name to the left, the figures to the right
        return "  " + "  ".join(
            v.ljust(widths[c]) if c == "family" else v.rjust(widths[c])
            for c, v in zip(table.columns, cells, strict=True)
        )

    print(line(list(table.columns)))
    print("\n".join(line(list(row)) for row in table.itertuples(index=False)))
    print(textwrap.fill(family_note(report), 100, initial_indent="  ", subsequent_indent="  "))
