"""``frontier report``, ``frontier select`` and ``frontier export``: reading finished studies."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.spec import StudyFileError, parse_latency, parse_size

if TYPE_CHECKING:
    from search.report import StudyReport
    from search.select import Budgets, Selection
    from search.stored import StoredStudy

EXIT_NOTHING_SELECTED = 1


def _size(text: str) -> int:
    try:
        return parse_size(text, "--max-size")
    except StudyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _latency(text: str) -> float:
    try:
        return parse_latency(text, "--max-latency")
    except StudyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _drop(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of points >= 0, got {text!r}")
    return value


def _bops(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of bit operations > 0, got {text!r}")
    return value


def _trial(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a trial number (an int >= 0), got {text!r}")
    return int(text)


def _add_study_args(p: argparse.ArgumentParser, *, many: bool) -> None:
    p.add_argument(
        "study",
        nargs="*" if many else "?",
        help="study file (.toml), storage file (.db, .log), or a study name with --storage",
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL (any backend)")
    p.add_argument(
        "--study",
        dest="names",
        action="append",
        default=[],
        metavar="NAME",
        help="study name in --storage" + (" (repeat to compare)" if many else ""),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the results folder, when the run used --out (for every study named)",
    )
    p.add_argument(
        "--no-remeasure",
        action="store_true",
        help="use only test figures the run stored; never rebuild candidates to measure the "
        "test split (points without one fall back to validation accuracy, with a note)",
    )


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-size", type=_size, default=None, help='largest artifact, e.g. "20KB"')
    p.add_argument(
        "--max-latency", type=_latency, default=None, help='largest latency, e.g. "0.5ms", "500us"'
    )
    p.add_argument(
        "--max-drop",
        type=_drop,
        default=None,
        help="largest accuracy drop below the teacher, in points (0.5 = half a point)",
    )
    p.add_argument(
        "--max-bops", type=_bops, default=None, help="largest bit operations per example, e.g. 1e6"
    )


def add_commands(sub: Any) -> None:
    """Register ``report``, ``select`` and ``export`` on the ``frontier`` sub-parsers."""
    p = sub.add_parser("report", help="write an HTML + Markdown report (several studies: compare)")
    _add_study_args(p, many=True)
    p.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="folder for report.html, report.md and PNGs (default: the study's results folder)",
    )
    p.add_argument("--no-png", action="store_true", help="skip the static PNG plots")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("select", help="pick the best front point under budgets and say why")
    _add_study_args(p, many=False)
    _add_budget_args(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("export", help="write a trial's artifact, config, ONNX and model card")
    _add_study_args(p, many=False)
    p.add_argument("--trial", type=_trial, default=None, help="trial number (default: select)")
    _add_budget_args(p)
    p.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="export folder (default: <results folder>/export/trial-<N>)",
    )
    p.set_defaults(func=cmd_export)


def _open_one(args: argparse.Namespace) -> StoredStudy:
    from search.stored import open_many

    refs = [args.study] if args.study else []
    opened = open_many(refs, storage=args.storage, names=args.names, out=args.out)
    if len(opened) != 1:
        raise StudyFileError("Name exactly one study.")
    return opened[0]


def cmd_report(args: argparse.Namespace) -> int:
    from search.report import build_report, write_report
    from search.stored import open_many

    opened = open_many(args.study, storage=args.storage, names=args.names, out=args.out)
    reports = []
    for stored in opened:
        print(f"frontier: reading study {stored.name!r} ({stored.storage_url}) ...", flush=True)
        reports.append(build_report(stored, remeasure=not args.no_remeasure))
        print(f"frontier: {reports[-1].test_note}")
    if args.dest is not None:
        dest = args.dest
    elif len(reports) == 1:
        dest = opened[0].results_dir
    else:
        name = "compare-" + "-vs-".join(r.name for r in reports)
        shared = len({o.results_dir for o in opened}) == 1
        # beside the studies' own results folders (studies/results/<name>), or inside the
        # one folder they share
        dest = (opened[0].results_dir if shared else opened[0].results_dir.parent) / name
    files = write_report(reports, dest.resolve(), png=not args.no_png)
    for r in reports:
        knee = f"knee: trial {r.knee_trial}" if r.knee_trial is not None else "empty front"
        print(
            f"frontier: {r.name}: {r.counts()['front']} front points, hypervolume "
            f"{r.hypervolume:.4f}, {knee}"
        )
    print(f"frontier: wrote {files.html}, {files.markdown} and {len(files.pngs)} PNG(s).")
    return 0


def _budgets(args: argparse.Namespace) -> Budgets:
    from search.select import Budgets

    return Budgets(
        max_size_bytes=args.max_size,
        max_latency_ms=args.max_latency,
        max_drop_points=args.max_drop,
        max_bops=args.max_bops,
    )


def _choose(args: argparse.Namespace, stored: StoredStudy) -> tuple[StudyReport, Selection, str]:
    """Select under the command line's budgets: (report, selection, explanation)."""
    from search.report import build_report
    from search.select import explain, select_point

    report = build_report(stored, remeasure=not args.no_remeasure)
    if report.front.empty:
        raise StudyFileError(f"Study {stored.name!r} has an empty front: nothing to select.")
    budgets = _budgets(args)
    teacher = report.teacher
    if teacher is None:
        if budgets.max_drop_points is not None:
            raise StudyFileError(
                f"Study {stored.name!r} has no teacher baseline trial; --max-drop needs one."
            )
        reference = math.nan
    else:
        test = teacher.get("test_accuracy")
        reference = float(test) if test is not None and test == test else float(teacher["accuracy"])
    selection = select_point(report.front, budgets, reference_accuracy=reference)
    teacher_size = float(teacher["size_bytes"]) if teacher is not None else None
    return report, selection, explain(selection, teacher_size=teacher_size)


def _print_candidates(selection: Selection) -> None:
    t = selection.table.sort_values(["meets", "score"], ascending=[False, False])
    rows = []
    for _, r in t.iterrows():
        rows.append(
            f"  {int(r['trial']):>5}  {100 * r['score']:6.2f}% ({r['score_split'][:4]})  "
            f"{r['size_bytes']:>9,.0f} B  {r['latency_ms']:7.3f} ms  "
            f"drop {r['drop_points']:5.2f}  {'meets' if r['meets'] else 'misses'}  {r['summary']}"
        )
    print("Front points considered:")
    print("\n".join(rows))


def cmd_select(args: argparse.Namespace) -> int:
    stored = _open_one(args)
    _, selection, text = _choose(args, stored)
    print(text)
    print()
    _print_candidates(selection)
    return 0 if selection.chosen is not None else EXIT_NOTHING_SELECTED


def cmd_export(args: argparse.Namespace) -> int:
    from search.export import export_trial, exportable_trial
    from search.rebuild import RebuildMismatch

    stored = _open_one(args)
    if args.trial is not None:
        try:
            exportable_trial(stored, args.trial)  # before any work
        except ValueError as exc:
            raise StudyFileError(str(exc)) from None
    report, selection, reason = _choose(args, stored)
    if args.trial is not None:
        trial = args.trial
        reason = f"Trial {trial} was named on the command line (`--trial {trial}`)."
    elif selection.chosen is None:
        print(reason, file=sys.stderr)
        print("frontier: nothing to export; relax a budget or pass --trial N.", file=sys.stderr)
        return EXIT_NOTHING_SELECTED
    else:
        trial = selection.chosen
        print(reason)
    dest = args.dest or stored.results_dir / "export" / f"trial-{trial}"
    row = report.trials[report.trials["trial"] == trial]
    figures = {}
    if len(row):
        for col in ("test_accuracy", "test_accuracy_low", "test_accuracy_high"):
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
