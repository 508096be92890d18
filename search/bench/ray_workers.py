"""``python -m search.bench ray``: trials per minute on a local Ray with 1, 2, ... workers.

The module is not named ``ray``: inside this package that name would read as the library's.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from search.bench.common import Benchmark
from search.bench.runs import add_study_arguments, header, prepare, smoke_args
from search.spec import load_spec


def bench_ray(args: argparse.Namespace) -> str:
    """Trials per minute on a local Ray with 1, 2, ... workers (one CPU per trial)."""
    from search.driver import open_study
    from search.objective import StudyContext
    from search.ray_backend import run_ray

    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _, setup_s = prepare(spec, Path(tmp) / "warm")
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}"
            shutil.copytree(Path(tmp) / "warm" / "cache", out / "cache")
            ctx = StudyContext(spec, out)
            study = open_study(spec, f"sqlite:///{out / 'study.db'}")
            summary = run_ray(ctx, study, n_trials=args.trials, workers=workers)
            done = sorted(t.datetime_complete for t in study.get_trials() if t.datetime_complete)
            # steady state: from the first `workers` finished trials (actors started) on
            span = (done[-1] - done[workers - 1]).total_seconds() if len(done) > workers else 0
            steady = 60 * (len(done) - workers) / span if span > 0 else float("nan")
            rows.append(
                {
                    "workers": workers,
                    "trials": summary.ran,
                    "wall_s": summary.wall_s,
                    "per_min": 60 * summary.ran / summary.wall_s,
                    "steady_per_min": steady,
                }
            )
            print(
                f"{workers} worker(s): {summary.ran} trials in {summary.wall_s:.1f}s, "
                f"{rows[-1]['per_min']:.1f} trials/min ({steady:.1f} once started)",
                flush=True,
            )
    df = pd.DataFrame(rows).set_index("workers")
    base = df.loc[args.workers[0]]
    cmd = (
        f"python -m search.bench ray {args.study_file.as_posix()} --trials {args.trials} "
        f"--workers {' '.join(str(w) for w in args.workers)}"
    )
    lines = header(
        "Ray Tune workers",
        cmd,
        args.study_file,
        setup_s,
        f"A local Ray, one CPU per trial, {args.trials} trials per run; wall time from "
        "submitting the first trial (actor start-up included) to the last result; 'once "
        "started' counts from the first result of each worker on.",
        hv=False,
    )
    lines += [
        "| workers | trials/min | speed-up | trials/min once started | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for w, r in df.iterrows():
        lines.append(
            f"| {w} | {r['per_min']:.1f} | {r['per_min'] / base['per_min']:.2f}x | "
            f"{r['steady_per_min']:.1f} | {r['steady_per_min'] / base['steady_per_min']:.2f}x |"
        )
    return "\n".join(lines)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_arguments(p, trials=40)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])


BENCHMARK = Benchmark(
    name="ray",
    help="trials per minute with Ray on 1 and 2 workers",
    add_arguments=_add_arguments,
    run=bench_ray,
    smoke=lambda args, folder: smoke_args(args, folder, trials=2, workers=[1]),
    rows=lambda args: [str(w) for w in args.workers],
)
