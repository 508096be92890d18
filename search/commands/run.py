"""``frontier run`` and ``frontier resume``: run a study's missing trials, then write its front."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evaluators.budgets import Budget
from search.commands._common import EXIT_INTERRUPTED, locate_study
from search.spec import StudyFileError

if TYPE_CHECKING:
    import optuna

    from search.objective import StudyContext


def run_command(
    study_file: str | Path,
    *,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    out: Path | None = None,
    storage: str | None = None,
    progress: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
) -> int:
    """Run (or continue) a study until it holds ``n_trials`` finished trials.

    Args:
        study_file: The study file (TOML).
        n_trials: Total trials the study should hold; default: the study file's.
        timeout_s: Stop starting trials after this many seconds; default: the study file's.
        out: The results folder; default ``<study file's folder>/results/<study name>``.
        storage: An Optuna storage URL; default: the study file's, else SQLite in ``out``.
        progress: Show a progress bar.
        backend: ``"local"`` (trials one after another here) or ``"ray"``.
        ray_address: The Ray cluster to join (``backend="ray"``).
        workers: Ray trials at once (``backend="ray"``).

    Returns:
        0, or :data:`EXIT_INTERRUPTED` after Ctrl-C (what finished is saved).

    Raises:
        StudyFileError: the study file is invalid, or names a layer or student the model
            does not have.
    """
    spec, results_dir, url = locate_study(study_file, out=out, storage=storage)
    from search.driver import count_finished, open_study, run_study
    from search.objective import StudyContext
    from search.ray_startup import starting_ray
    from search.results import write_outputs
    from search.status import outputs_lock

    n_trials = n_trials or spec.study.n_trials
    timeout = timeout_s if timeout_s is not None else spec.study.timeout_s
    print(f"frontier: study {spec.study.name!r} on task {spec.task!r}; results in {results_dir}")
    print("frontier: preparing the teacher (trained once, then cached) ...", flush=True)
    start = None
    if backend == "ray":
        from search.backends import importing_ray_to_join

        with importing_ray_to_join(ray_address or spec.ray.address):
            from search.ray_backend import connect, run_ray
        start = functools.partial(connect, spec.ray, ray_address)
    # Ray (when it runs the trials) starts while the driver prepares; run_ray waits for it
    with starting_ray(start):
        try:
            ctx = StudyContext(spec, results_dir)
        except ValueError as exc:  # a bad layer or student name, discovered against the model
            raise StudyFileError(str(exc)) from None
        study = open_study(spec, url, results_dir=results_dir)
        done = count_finished(study)
        if done >= n_trials:
            print(
                f"frontier: the study already holds {done} finished trials (n_trials = "
                f"{n_trials}); pass a larger --n-trials to add more."
            )
        _queue(ctx, study, n_trials)
    bar = _Bar(n_trials, done, disable=not progress)
    try:
        if backend == "ray":
            summary = run_ray(
                ctx,
                study,
                n_trials=n_trials,
                timeout_s=timeout,
                address=ray_address,
                workers=workers,
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
    if not summary.interrupted:
        _final_figures(ctx, study, url)
    with outputs_lock(results_dir):  # several workers may share one results folder
        trials, front = write_outputs(study, results_dir)
    print_front(front, trials, spec.study.objectives, budget=spec.budget)
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


def _final_figures(ctx: StudyContext, study: optuna.Study, url: str) -> None:
    """Re-time the front and the baselines side by side; measure them on the test split."""
    from search.final import final_figures
    from search.stored import StoredStudy

    print(
        "frontier: final figures: timing the front and the baselines side by side, and "
        "measuring them on the test split ...",
        flush=True,
    )
    done = final_figures(StoredStudy(study, ctx.spec, ctx.results_dir, url, _context=ctx))
    print(f"frontier: {done.note}")


class _Bar:
    """A tqdm bar of finished trials, with the feasible count and best accuracy in budget."""

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
        from search.status import progress_of

        p = progress_of(study.get_trials(deepcopy=False))  # type: ignore[attr-defined]
        best = f"{100 * p.best_accuracy:.2f}%" if p.feasible else "-"
        self.tqdm.n = p.finished
        self.tqdm.set_postfix(feasible=p.feasible, best_acc_in_budget=best, refresh=False)
        self.tqdm.refresh()

    def close(self) -> None:
        self.tqdm.close()


def print_front(
    front: pd.DataFrame,
    trials: pd.DataFrame,
    objectives: Sequence[str] = (),
    *,
    budget: Budget | None = None,
) -> None:
    """Print the front as a table: validation figures, test figures when known, baselines.

    An empty front prints one line saying why nothing is feasible (``budget``: the study's,
    to quote its limits).
    """
    if front.empty:
        from search.infeasible import why_nothing_feasible

        print(f"frontier: {why_nothing_feasible(trials, budget)}")
        return
    from search.results import quoted_latency

    teacher = trials[trials["baseline"] == "teacher"]
    ref_size = float(teacher["size_bytes"].iloc[0]) if len(teacher) else float("nan")
    ref_ms = float(quoted_latency(teacher).iloc[0]) if len(teacher) else float("nan")
    latency = quoted_latency(front)
    table = pd.DataFrame(
        {
            "trial": front["trial"],
            "accuracy %": (100 * front["accuracy"]).round(2),
            "size_bytes": front["size_bytes"].astype(int),
            "smaller": (ref_size / front["size_bytes"]).map(lambda v: f"{v:.1f}x"),
            "latency_ms": latency.round(3),
            "faster": (ref_ms / latency).map(lambda v: f"{v:.2f}x"),
            "search_ms": front["latency_ms"].round(3),
            "student": front.get("student", ""),
            "baseline": front["baseline"],
        }
    )
    if "test_accuracy" in front and front["test_accuracy"].notna().any():
        # validation chose these points; the test split reports them (95% bootstrap interval)
        table.insert(
            2,
            "test % [95% CI]",
            [
                f"{100 * a:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]" if a == a else "-"
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
    final = "final_latency_ms" in front and front["final_latency_ms"].notna().all()
    print(
        f"\nPareto front ({len(front)} feasible points, chosen on the validation split; "
        + (
            "latency_ms: final, timed side by side with the teacher; search_ms: while searching):"
            if final
            else "latency_ms: search-time, no final side-by-side timing):"
        )
    )
    print(table.to_string(index=False))
    print()


def _queue(ctx: StudyContext, study: optuna.Study, n_trials: int) -> None:
    """Queue the baselines and the warm starts (measuring the sensitivities first, once per
    study), saying so."""
    from search.queue import prepare_queue
    from search.warm_starts import WARM_STARTS_ATTR

    s = ctx.spec.sensitivity
    wanted = s.warm_starts + s.int8_warm_starts > 0
    if s.enabled and wanted and WARM_STARTS_ATTR not in study.user_attrs:
        print(
            "frontier: measuring per-layer sensitivity (once per study; [sensitivity] enabled "
            "= false turns it off) ...",
            flush=True,
        )
        done = prepare_queue(study, ctx, n_trials)
        print(
            f"frontier: {len(done.labels)} warm starts enqueued after the baselines "
            f"(sensitivity took {done.seconds:.1f}s)."
        )
