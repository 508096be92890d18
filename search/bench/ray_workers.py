"""``python -m search.bench ray``: trials per minute on a local Ray with 1, 2, ... workers.

Each run is timed as a user's ``frontier run --backend ray`` runs (with the teacher and students
already in the weight cache): from its start, where a local Ray of its own starts in the
background while the driver builds its study context and opens the study, through the queue,
the actors' start-up (importing torch, taking the driver's context) and every trial, to the
last result. 'Once started' counts from the first result of each worker on.

The module is not named ``ray``: inside this package that name would read as the library's.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import Benchmark
from search.bench.runs import add_study_arguments, header, prepare, smoke_args
from search.spec import load_spec


def bench_ray(args: argparse.Namespace) -> str:
    """Trials per minute on a local Ray with 1, 2, ... workers (one CPU per trial)."""
    spec = load_spec(args.study_file)
    if args.latency_mode is not None:
        spec = dataclasses.replace(
            spec, latency=dataclasses.replace(spec.latency, mode=args.latency_mode)
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _, setup_s = prepare(spec, Path(tmp) / "warm")
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}"
            shutil.copytree(Path(tmp) / "warm" / "cache", out / "cache")
            rows.append(_one_run(spec, out, args.trials, workers))
            r = rows[-1]
            print(
                f"{workers} worker(s): {r['trials']} trials in {r['wall_s']:.1f}s, "
                f"{r['per_min']:.1f} trials/min ({r['steady_per_min']:.1f} once started; "
                f"first result after {r['first_s']:.1f}s)",
                flush=True,
            )
    df = pd.DataFrame(rows).set_index("workers")
    base = df.loc[args.workers[0]]
    cmd = (
        f"python -m search.bench ray {args.study_file.as_posix()} --trials {args.trials} "
        f"--workers {' '.join(str(w) for w in args.workers)}"
        + (f" --latency-mode {args.latency_mode}" if args.latency_mode else "")
    )
    lines = header(
        "Ray Tune workers",
        cmd,
        args.study_file,
        setup_s,
        f"A local Ray, one CPU per trial, {args.trials} trials per run; wall time from the "
        "start of the run (the driver's context built from the weight cache while Ray starts, "
        "the queue, the actors' start-up) to the last result; 'once started' counts from the "
        "first result of each worker on; 'first result': seconds from the start of the run to "
        f"the first trial's result. Latency {spec.latency.mode}"
        + (
            ": the machine's lookup table was built before the runs, with the teacher; the "
            "front is timed after the search, outside these figures."
            if spec.latency.mode == "predicted"
            else ": each candidate timed alone on the machine."
        ),
        hv=False,
    )
    lines += [
        "| workers | trials/min | speed-up | trials/min once started | speed-up | first result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for w, r in df.iterrows():
        lines.append(
            f"| {w} | {r['per_min']:.1f} | {r['per_min'] / base['per_min']:.2f}x | "
            f"{r['steady_per_min']:.1f} | {r['steady_per_min'] / base['steady_per_min']:.2f}x | "
            f"{r['first_s']:.1f}s |"
        )
    return "\n".join(lines)


def _one_run(spec: Any, out: Path, trials: int, workers: int) -> dict[str, Any]:
    """One timed run of a fresh study on a Ray of its own, started inside the clock."""
    from search.driver import open_study
    from search.objective import StudyContext
    from search.ray_backend import connect, ray, run_ray
    from search.ray_startup import start_ray

    if ray.is_initialized():
        ray.shutdown()  # each run pays for its own Ray, as a user's run does
    start, t0 = time.time(), time.monotonic()
    start_ray(lambda: connect(spec.ray, None))  # as `frontier run`: while the driver prepares
    ctx = StudyContext(spec, out)
    study = open_study(spec, f"sqlite:///{out / 'study.db'}")
    summary = run_ray(ctx, study, n_trials=trials, workers=workers)
    wall_s = time.monotonic() - t0
    done = sorted(
        t.datetime_complete.timestamp() - start
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete
    )
    # steady state: from the first `workers` finished trials (actors started) on
    span = done[-1] - done[workers - 1] if len(done) > workers else 0
    return {
        "workers": workers,
        "trials": summary.ran,
        "wall_s": wall_s,
        "per_min": 60 * summary.ran / wall_s,
        "steady_per_min": 60 * (len(done) - workers) / span if span > 0 else float("nan"),
        "first_s": done[0] if done else float("nan"),
    }


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_arguments(p, trials=40)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--latency-mode",
        choices=["measured", "predicted"],
        default=None,
        help="override the study's latency.mode (default: the study's own)",
    )


BENCHMARK = Benchmark(
    name="ray",
    help="trials per minute with Ray on 1 and 2 workers",
    add_arguments=_add_arguments,
    run=bench_ray,
    smoke=lambda args, folder: smoke_args(args, folder, trials=2, workers=[1]),
    rows=lambda args: [str(w) for w in args.workers],
)
