"""``frontier export``: rebuild one trial (named, or selected under a budget) and write it out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from evaluators.budgets import Budget
from search.commands._common import EXIT_NOTHING_SELECTED, open_one
from search.commands.select import choose
from search.spec import StudyFileError


def export_command(
    study: str | None = None,
    *,
    trial: int | None = None,
    budget: Budget | None = None,
    storage: str | None = None,
    names: Sequence[str] = (),
    out: Path | None = None,
    remeasure: bool = True,
    dest: Path | None = None,
) -> int:
    """Write a trial's artifact, config, ONNX graph and model card.

    Args:
        study: A study file, results folder or storage file; ``None`` to name it by
            ``storage`` and ``names``.
        trial: The trial to export; ``None`` exports the point selected under ``budget``.
        budget: The limits for selecting (default: none).
        storage: An Optuna storage URL.
        names: The study's name in ``storage`` (exactly one study in all).
        out: The results folder the run was given (``--out``).
        remeasure: Compute the final figures (side-by-side latency, test split) the run did
            not store, rebuilding the candidates.
        dest: The export folder; default ``<results folder>/export/trial-<N>``.

    Returns:
        0 when exported, :data:`EXIT_NOTHING_SELECTED` when no trial was named and no front
        point meets the budget.

    Raises:
        StudyFileError: the study cannot be opened, the trial is not a complete trial, or
            its rebuild does not match what the study measured.
    """
    from search.export import export_trial, exportable_trial
    from search.rebuild import RebuildMismatch
    from search.results import FINAL_COLUMNS, TEST_COLUMNS

    stored = open_one(study, storage=storage, names=names, out=out)
    if trial is not None:
        try:
            exportable_trial(stored, trial)  # before any work
        except ValueError as exc:
            raise StudyFileError(str(exc)) from None
    report, selection, reason = choose(stored, budget or Budget(), remeasure=remeasure)
    if trial is not None:
        reason = f"Trial {trial} was named on the command line (`--trial {trial}`)."
    elif selection.chosen is None:
        print(reason, file=sys.stderr)
        print("frontier: nothing to export; relax a budget or pass --trial N.", file=sys.stderr)
        return EXIT_NOTHING_SELECTED
    else:
        trial = selection.chosen
        print(reason)
    dest = dest or stored.results_dir / "export" / f"trial-{trial}"
    row = report.trials[report.trials["trial"] == trial]
    figures = {}
    if len(row):
        for col in (*TEST_COLUMNS, *FINAL_COLUMNS):
            value = row.iloc[0].get(col)
            if isinstance(value, float) and value == value:
                figures[col] = value
    print(f"frontier: rebuilding trial {trial} and exporting to {dest} ...", flush=True)
    try:
        result = export_trial(stored, trial, dest.resolve(), figures=figures, reason=reason)
    except (ValueError, RebuildMismatch) as exc:
        raise StudyFileError(str(exc)) from None
    print(
        f"frontier: wrote {result.path('artifact')} ({result.size_bytes:,} B, as measured), "
        f"{result.path('config').name}, {result.path('onnx').name} (onnxruntime test accuracy "
        f"{100 * result.onnx_test_accuracy:.2f}%) and {result.path('card').name}."
    )
    return 0
