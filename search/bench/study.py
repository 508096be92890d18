"""``python -m search.bench study``: the default study's speed, overhead and size reduction."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from search.bench.common import Benchmark, machine, smoke_source, tiny_study, today

DEFAULT_STUDY = Path("studies/digits_cnn.toml")
#: Per-trial figures that time model work: the cheap checks, early stopping's rung 0 (first
#: compression and every evaluator, a student's distillation the first time one is picked),
#: compression and fine-tuning, the evaluators. Everything else in a run's wall time is
#: sampling, storage and bookkeeping.
MODEL_WORK = ("cheap_s", "rung0_s", "compress_s", "evaluate_s")
ROWS = (
    "trials per minute",
    "share of wall time outside model work (sampling, storage, bookkeeping)",
    "best size reduction on the front at <= 1 point accuracy drop (validation)",
    "front points",
    "search wall time (s)",
    "teacher preparation (s)",
)


def best_reduction(trials: pd.DataFrame, max_drop_points: float = 1.0) -> tuple[float, int]:
    """Largest fp32-size / size ratio of a front point within ``max_drop_points`` of the teacher."""
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    front = trials[trials["front"].astype(bool)]
    ok = front[100 * (teacher["accuracy"] - front["accuracy"]) <= max_drop_points + 1e-9]
    if ok.empty:
        return float("nan"), -1
    best = ok.loc[ok["size_bytes"].idxmin()]
    return float(teacher["size_bytes"] / best["size_bytes"]), int(best["trial"])


def bench_study(study_file: Path, repeats: int) -> str:
    """Trials per minute, share of wall time outside model work, best size reduction."""
    from search.driver import open_study, run_study
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec

    spec = load_spec(study_file)
    rows = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            t0 = time.perf_counter()
            ctx = StudyContext(spec, out)
            setup_s = time.perf_counter() - t0
            study = open_study(spec, f"sqlite:///{out / 'study.db'}")
            summary = run_study(ctx, study, n_trials=spec.study.n_trials)
            trials, front = write_outputs(study, out)
            model_s = float(sum(trials[c].fillna(0).sum() for c in MODEL_WORK if c in trials))
            # the sensitivity analysis before the first trial (students distilled for it)
            model_s += float(study.user_attrs.get("sensitivity_s", 0.0))
            ratio, trial = best_reduction(trials)
            rows.append(
                {
                    "run": r,
                    "trials": summary.ran,
                    "setup_s": setup_s,
                    "search_s": summary.wall_s,
                    "trials_per_min": 60 * summary.ran / summary.wall_s,
                    "outside_model_share": max(0.0, 1 - model_s / summary.wall_s),
                    "front_points": len(front),
                    "best_reduction_1pt": ratio,
                }
            )
            print(
                f"run {r}: {summary.ran} trials in {summary.wall_s:.1f}s "
                f"(+{setup_s:.1f}s teacher), "
                f"{rows[-1]['trials_per_min']:.0f} trials/min, outside-model share "
                f"{rows[-1]['outside_model_share']:.1%}, front {len(front)} points, best "
                f"{ratio:.1f}x at <= 1 point (trial {trial})",
                flush=True,
            )
    df = pd.DataFrame(rows)
    med = df.median(numeric_only=True)
    cmd = f"python -m search.bench study {study_file.as_posix()} --repeats {repeats}"
    return "\n".join(
        [
            f"## Default study: `{study_file.as_posix()}`",
            "",
            f"Command: `{cmd}` (fresh results folder each run; teacher training is timed "
            "apart as setup). Model work is the trials' own clocks: cheap checks, early "
            "stopping's rung 0 (a student's distillation the first time one is picked), "
            "compression and fine-tuning, evaluation (`cheap_s`, `rung0_s`, `compress_s`, "
            "`evaluate_s`), and the sensitivity analysis before the first trial (`sensitivity_s`,"
            " the students it distils included); the rest of the search's wall time is outside it.",
            f"Machine: {machine()}. Date: {today()}. "
            f"Median of {repeats} runs of {spec.study.n_trials} trials.",
            "",
            "| figure | median | runs |",
            "| --- | --- | --- |",
            f"| {ROWS[0]} | {med['trials_per_min']:.0f} | "
            + ", ".join(f"{v:.0f}" for v in df["trials_per_min"])
            + " |",
            f"| {ROWS[1]} | {med['outside_model_share']:.1%} | "
            + ", ".join(f"{v:.1%}" for v in df["outside_model_share"])
            + " |",
            f"| {ROWS[2]} | {med['best_reduction_1pt']:.1f}x | "
            + ", ".join(f"{v:.1f}x" for v in df["best_reduction_1pt"])
            + " |",
            f"| {ROWS[3]} | {med['front_points']:.0f} | "
            + ", ".join(str(int(v)) for v in df["front_points"])
            + " |",
            f"| {ROWS[4]} | {med['search_s']:.1f} | "
            + ", ".join(f"{v:.1f}" for v in df["search_s"])
            + " |",
            f"| {ROWS[5]} | {med['setup_s']:.1f} | "
            + ", ".join(f"{v:.1f}" for v in df["setup_s"])
            + " |",
        ]
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", type=Path, default=DEFAULT_STUDY)
    p.add_argument("--repeats", type=int, default=3)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    study_file = tiny_study(smoke_source(args.study_file, DEFAULT_STUDY), folder)
    return argparse.Namespace(**{**vars(args), "study_file": study_file, "repeats": 1})


BENCHMARK = Benchmark(
    name="study",
    help="the default study: speed, overhead, size reduction",
    add_arguments=_add_arguments,
    run=lambda args: bench_study(args.study_file, args.repeats),
    smoke=_smoke,
    rows=lambda args: ROWS,
)
