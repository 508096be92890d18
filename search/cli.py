"""The ``frontier`` command line: the argument parser, and nothing else.

The work of each command lives in :mod:`search.commands`; this module builds the parser,
parses, calls the command with plain arguments, and is the one place that turns a bad study
file, flag or budget into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from evaluators.budgets import Budget, BudgetError
from search.backends import BACKENDS
from search.commands import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    export_command,
    report_command,
    run_command,
    select_command,
    sensitivity_command,
    status_command,
)
from search.spec import StudyFileError, parse_duration, parse_latency, parse_size


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``frontier`` with ``argv`` (default: the process's); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (StudyFileError, BudgetError) as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the search loop (which handles Ctrl-C itself)
        print("frontier: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The ``frontier`` parser; each sub-command's ``func`` takes the parsed arguments."""
    parser = argparse.ArgumentParser(
        prog="frontier",
        description="Search quantization, pruning and distilled students jointly; "
        "return the measured Pareto front.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, helptext in (
        ("run", "run a study (continues it when it already exists)"),
        ("resume", "continue an existing study (same as run)"),
    ):
        _add_run(sub.add_parser(name, help=helptext))

    p = sub.add_parser("report", help="write an HTML + Markdown report (several studies: compare)")
    _add_study_args(p, many=True)
    p.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="folder for report.html, report.md and PNGs (default: the study's results folder)",
    )
    p.add_argument("--no-png", action="store_true", help="skip the static PNG plots")
    p.set_defaults(func=_report)

    p = sub.add_parser("select", help="pick the best front point under budgets and say why")
    _add_study_args(p, many=False)
    _add_budget_args(p)
    p.set_defaults(func=_select)

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
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "status",
        help="trials by state, front size, hypervolume, speed and time left of a study",
    )
    p.add_argument(
        "study", nargs="?", default=None, help="study file (TOML), results folder or storage file"
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL (instead of a file)")
    p.add_argument("--study", dest="study_name", default=None, help="study name in --storage")
    p.add_argument("--out", type=Path, default=None, help="results folder of the study file")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "sensitivity",
        help="per-layer sensitivity table and heatmaps of a study's models, before any search",
    )
    p.add_argument("study", help="study file (TOML)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default as run)")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME",
        help="teacher (default) or a student; repeat for several",
    )
    p.set_defaults(func=_sensitivity)
    return parser


# --- from parsed arguments to a command's plain arguments ---------------------------------


def _run(args: argparse.Namespace) -> int:
    return run_command(
        args.study,
        n_trials=args.n_trials,
        timeout_s=args.timeout,
        out=args.out,
        storage=args.storage,
        progress=not args.no_progress,
        backend=args.backend,
        ray_address=args.ray_address,
        workers=args.workers,
    )


def _status(args: argparse.Namespace) -> int:
    return status_command(
        args.study, storage=args.storage, study_name=args.study_name, out=args.out
    )


def _sensitivity(args: argparse.Namespace) -> int:
    return sensitivity_command(args.study, out=args.out, models=args.models)


def _report(args: argparse.Namespace) -> int:
    return report_command(
        args.study,
        storage=args.storage,
        names=args.names,
        out=args.out,
        remeasure=not args.no_remeasure,
        dest=args.dest,
        png=not args.no_png,
    )


def _budget(args: argparse.Namespace) -> Budget:
    return Budget.from_flags(
        max_size_bytes=args.max_size,
        max_latency_ms=args.max_latency,
        max_accuracy_drop=args.max_drop,
        max_bops=args.max_bops,
    )


def _select(args: argparse.Namespace) -> int:
    return select_command(
        args.study,
        budget=_budget(args),
        storage=args.storage,
        names=args.names,
        out=args.out,
        remeasure=not args.no_remeasure,
    )


def _export(args: argparse.Namespace) -> int:
    return export_command(
        args.study,
        trial=args.trial,
        budget=_budget(args),
        storage=args.storage,
        names=args.names,
        out=args.out,
        remeasure=not args.no_remeasure,
        dest=args.dest,
    )


# --- arguments -----------------------------------------------------------------------------


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study file (TOML), e.g. studies/digits_cnn.toml")
    p.add_argument(
        "--n-trials",
        type=_positive_int,
        default=None,
        help="total trials the study should hold (default: the study file's)",
    )
    p.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        help="stop starting trials after this long, e.g. 90s, 10m, 8h",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: studies/results/<study name>)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: SQLite in the results folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: trials one after another in this process; ray: in parallel on Ray "
        "workers (default: local)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (default: the study's [ray] address, else a local Ray)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="Ray trials at once (default: the study's [ray] workers, else CPUs)",
    )
    p.set_defaults(func=_run)


def _add_study_args(p: argparse.ArgumentParser, *, many: bool) -> None:
    p.add_argument(
        "study",
        nargs="*" if many else "?",
        help="study file (.toml), results folder, storage file (.db, .log), or a study name "
        "with --storage",
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
        help="use only the final figures the run stored; never rebuild candidates to time "
        "them side by side or to measure the test split (points without a final latency are "
        "quoted with their search-time latency, with a note)",
    )


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    """The budget flags; their ranges are checked by :class:`Budget` (the error names them)."""
    p.add_argument("--max-size", type=_size, default=None, help='largest artifact, e.g. "20KB"')
    p.add_argument(
        "--max-latency", type=_latency, default=None, help='largest latency, e.g. "0.5ms", "500us"'
    )
    p.add_argument(
        "--max-drop",
        type=_number,
        default=None,
        help="largest accuracy drop below the teacher, in points (0.5 = half a point)",
    )
    p.add_argument(
        "--max-bops",
        type=_number,
        default=None,
        help="largest bit operations per example, e.g. 1e6",
    )


# --- argument types: a bad value is a usage error naming the flag (argparse, exit code 2) ---


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text, "--timeout")
    except StudyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}")
    return value


def _trial(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a trial number (an int >= 0), got {text!r}")
    return int(text)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
