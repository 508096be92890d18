"""What the search benchmarks (samplers, early stopping, Ray workers) share: one context trained
once, fresh studies run against it, and the head of their sections.

Quality is the hypervolume of the feasible front against the fixed normalised reference point
of :mod:`search.quality`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import load_average, machine, smoke_source, tiny_study, today
from search.quality import reference_text
from search.spec import StudySpec, load_spec

DEFAULT_STUDY = Path("studies/digits_cnn.toml")


def add_study_arguments(p: argparse.ArgumentParser, *, trials: int) -> None:
    """The study file and the trials per run, as every search benchmark takes them."""
    p.add_argument("study_file", nargs="?", type=Path, default=DEFAULT_STUDY)
    p.add_argument("--trials", type=int, default=trials)


def smoke_args(
    args: argparse.Namespace,
    folder: Path,
    tables: dict[str, dict[str, Any]] | None = None,
    **changes: Any,
) -> argparse.Namespace:
    """``args`` with ``changes``, on a tiny copy of the study file (with ``tables``' settings)
    and ``changes["trials"]`` trials."""
    source = smoke_source(args.study_file, DEFAULT_STUDY)
    study_file = tiny_study(source, folder, n_trials=changes["trials"], tables=tables)
    return argparse.Namespace(**{**vars(args), "study_file": study_file, **changes})


def with_study(spec: StudySpec, **study: Any) -> StudySpec:
    return dataclasses.replace(spec, study=dataclasses.replace(spec.study, **study))


def prepare(spec: StudySpec, cache_root: Path) -> tuple[Any, float]:
    """A context whose teacher and students are trained once into ``cache_root`` (and, for a
    study with predicted latency, the machine's lookup table holds their operators)."""
    from evaluators.latency import PredictedLatencyEvaluator
    from search.objective import StudyContext

    t0 = time.perf_counter()
    ctx = StudyContext(spec, cache_root)
    for student in ctx.space.students:
        model = ctx.pool.get(student)
        for evaluator in ctx.evaluators:  # a predicted study's lookup table, built once too
            if isinstance(evaluator, PredictedLatencyEvaluator):
                evaluator.predictor.predict(model)
    return ctx, time.perf_counter() - t0


def run_local(
    ctx: Any, spec: StudySpec, db: Path, n_trials: int
) -> tuple[pd.DataFrame, float, Any]:
    """Run a fresh study with ``spec``'s sampler and seed on ``ctx``: table, wall time, study."""
    from search.driver import open_study, run_study
    from search.results import trials_frame

    study = open_study(spec, f"sqlite:///{db}")
    old_spec = ctx.spec
    ctx.spec = spec  # same task, caches and trial seeds; the settings under test differ
    try:
        summary = run_study(ctx, study, n_trials=n_trials)
    finally:
        ctx.spec = old_spec
    return trials_frame(study), summary.wall_s, study


def header(
    title: str, cmd: str, spec_file: Path, setup_s: float, extra: str, *, hv: bool = True
) -> list[str]:
    ref = reference_text(load_spec(spec_file).study.objectives)
    quality = (
        f"Hypervolume: feasible front, objectives divided by the teacher's, reference point "
        f"({ref}) (see `search/quality.py`). "
        if hv
        else ""
    )
    return [
        f"## {title}",
        "",
        f"Command: `{cmd}`",
        f"Study: `{spec_file.as_posix()}`. Machine: {machine()}. Load average after the "
        f"run: {load_average()}. Date: {today()}. Teacher and students "
        f"trained once ({setup_s:.0f}s), shared by every run.",
        quality + extra,
        "",
    ]


def median_row(label: str, values: pd.Series, fmt: str) -> str:
    median = statistics.median(values.tolist())
    return f"| {label} | {fmt.format(median)} | " + ", ".join(fmt.format(v) for v in values) + " |"
