"""The ``frontier`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from search.backends import BACKENDS
from search.commands import add_commands
from search.spec import StudyFileError, StudySpec, load_spec, parse_duration

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def build_parser() -> argparse.ArgumentParser:
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
        p = sub.add_parser(name, help=helptext)
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
        p.set_defaults(func=cmd_run)
    add_commands(sub)  # report, select, export
    p = sub.add_parser(
        "status",
        help="trials by state, front size, hypervolume, speed and time left of a study",
    )
    p.add_argument("study", nargs="?", default=None, help="study file (TOML)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (instead of a file)")
    p.add_argument("--study", dest="study_name", default=None, help="study name in --storage")
    p.add_argument("--out", type=Path, default=None, help="results folder of the study file")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except StudyFileError as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the search loop (which handles Ctrl-C itself)
        print("frontier: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _setup(args: argparse.Namespace) -> tuple[StudySpec, Path, str]:
    spec = load_spec(args.study)
    out = args.out.resolve() if args.out is not None else None
    from search.driver import default_results_dir, default_storage

    results_dir = out or default_results_dir(spec, args.study)
    storage = args.storage or spec.study.storage or default_storage(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    return spec, results_dir, storage


def cmd_run(args: argparse.Namespace) -> int:
    spec, results_dir, storage = _setup(args)
    from search.driver import count_finished, open_study, run_study
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.status import outputs_lock

    n_trials = args.n_trials or spec.study.n_trials
    timeout = args.timeout if args.timeout is not None else spec.study.timeout_s
    print(f"frontier: study {spec.study.name!r} on task {spec.task!r}; results in {results_dir}")
    print("frontier: preparing the teacher (trained once, then cached) ...", flush=True)
    try:
        ctx = StudyContext(spec, results_dir)
    except ValueError as exc:  # a bad layer or student name, discovered against the model
        raise StudyFileError(str(exc)) from None
    study = open_study(spec, storage, results_dir=results_dir)
    done = count_finished(study)
    if done >= n_trials:
        print(
            f"frontier: the study already holds {done} finished trials (n_trials = "
            f"{n_trials}); pass a larger --n-trials to add more."
        )
    bar = _progress_bar(n_trials, done, disable=args.no_progress)
    try:
        if args.backend == "ray":
            from search.ray_backend import run_ray

            summary = run_ray(
                ctx,
                study,
                n_trials=n_trials,
                timeout_s=timeout,
                address=args.ray_address,
                workers=args.workers,
                progress=bar.update,
            )
        else:
            summary = run_study(
                ctx, study, n_trials=n_trials, timeout_s=timeout, progress=bar.update
            )
    finally:
        bar.close()
    if spec.latency.mode == "predicted":
        from search.remeasure import measure_front_latency

        print("frontier: timing the front (the search used predicted latency) ...", flush=True)
        measure_front_latency(ctx, study)
    with outputs_lock(results_dir):  # several workers may share one results folder
        trials, front = write_outputs(study, results_dir)
    _print_front(front, trials, spec.study.objectives)
    print(
        f"frontier: {summary.ran} trials run in {summary.wall_s:.1f}s; "
        f"{len(trials)} in the study. Wrote {results_dir / 'trials.csv'}, "
        f"{results_dir / 'front.csv'} and {results_dir / 'front.png'}."
    )
    if summary.interrupted:
        print(
            "frontier: interrupted; everything finished so far is saved. Run the same "
            "command again to continue.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from search.status import open_for_status, render, summarize

    study, target = open_for_status(args)
    print(render(summarize(study, target)))
    return 0


class _Bar:
    def __init__(self, total: int, initial: int, disable: bool) -> None:
        from tqdm.auto import tqdm

        self.tqdm = tqdm(
            total=total,
            initial=initial,
            disable=disable,
            unit="trial",
            desc="trials",
            dynamic_ncols=True,
        )

    def update(self, study: object) -> None:
        from search.driver import count_finished
        from search.results import trials_frame

        df = trials_frame(study)  # type: ignore[arg-type]
        ok = df[(df["state"] == "COMPLETE") & df["feasible"].astype(bool)]
        best = f"{100 * ok['accuracy'].max():.2f}%" if len(ok) else "-"
        self.tqdm.n = count_finished(study)  # type: ignore[arg-type]
        self.tqdm.set_postfix(feasible=len(ok), best_acc_in_budget=best, refresh=False)
        self.tqdm.refresh()

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(total: int, initial: int, *, disable: bool) -> _Bar:
    return _Bar(total, initial, disable)


def _print_front(front: pd.DataFrame, trials: pd.DataFrame, objectives: Sequence[str] = ()) -> None:
    if front.empty:
        print(
            "frontier: no feasible trial yet: the front is empty. Loosen [budget] or run "
            "more trials."
        )
        return
    teacher = trials[trials["baseline"] == "teacher"]
    ref_size = float(teacher["size_bytes"].iloc[0]) if len(teacher) else float("nan")
    table = pd.DataFrame(
        {
            "trial": front["trial"],
            "accuracy %": (100 * front["accuracy"]).round(2),
            "size_bytes": front["size_bytes"].astype(int),
            "smaller": (ref_size / front["size_bytes"]).round(1).astype(str) + "x",
            "latency_ms": front["latency_ms"].round(3),
            "student": front.get("student", ""),
            "baseline": front["baseline"],
        }
    )
    if "test_accuracy" in front:
        # validation chose these points; the test split reports them (95% bootstrap interval)
        table.insert(
            2,
            "test % [95% CI]",
            [
                f"{100 * a:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                for a, lo, hi in zip(
                    front["test_accuracy"],
                    front["test_accuracy_low"],
                    front["test_accuracy_high"],
                    strict=True,
                )
            ],
        )
    if "latency_measured_ms" in front:
        table["measured_ms"] = front["latency_measured_ms"].round(3)
    if "bops" in objectives:
        at = table.columns.get_loc("latency_ms") + 1
        table.insert(at, "bops", front["bops"].map("{:.3g}".format))
    print(f"\nPareto front ({len(front)} feasible points, validation split):")
    print(table.to_string(index=False))
    print()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
