"""Benchmarks that print what they measure and update ``BENCHMARKS.md``.

Usage::

    python -m search.bench study [STUDY.toml] [--repeats 3]
    python -m search.bench samplers | early-stopping | ray [STUDY.toml] ...  (bench_search.py)

Each benchmark runs fresh studies in a temporary folder (so caches do not flatter it),
prints its figures and rewrites its own section of ``BENCHMARKS.md`` (between
``<!-- bench:NAME -->`` markers), recording the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``name`` section of BENCHMARKS.md (appending it when absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


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
            model_s = float((trials["compress_s"].fillna(0) + trials["evaluate_s"].fillna(0)).sum())
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
            "apart as setup).",
            f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. "
            f"Median of {repeats} runs of {spec.study.n_trials} trials.",
            "",
            "| figure | median | runs |",
            "| --- | --- | --- |",
            f"| trials per minute | {med['trials_per_min']:.0f} | "
            + ", ".join(f"{v:.0f}" for v in df["trials_per_min"])
            + " |",
            "| share of wall time outside model work (sampling, storage, bookkeeping) | "
            f"{med['outside_model_share']:.1%} | "
            + ", ".join(f"{v:.1%}" for v in df["outside_model_share"])
            + " |",
            f"| best size reduction on the front at <= 1 point accuracy drop (validation) | "
            f"{med['best_reduction_1pt']:.1f}x | "
            + ", ".join(f"{v:.1f}x" for v in df["best_reduction_1pt"])
            + " |",
            f"| front points | {med['front_points']:.0f} | "
            + ", ".join(str(int(v)) for v in df["front_points"])
            + " |",
            f"| search wall time (s) | {med['search_s']:.1f} | "
            + ", ".join(f"{v:.1f}" for v in df["search_s"])
            + " |",
            f"| teacher preparation (s) | {med['setup_s']:.1f} | "
            + ", ".join(f"{v:.1f}" for v in df["setup_s"])
            + " |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("study", help="the default study: speed, overhead, size reduction")
    p.add_argument("study_file", nargs="?", type=Path, default=Path("studies/digits_cnn.toml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    from search import bench_search  # samplers, early-stopping, ray

    bench_search.add_parsers(sub)
    args = parser.parse_args(argv)
    if bench_search.run(args):
        return 0
    if args.bench == "study":
        body = bench_study(args.study_file, args.repeats)
        print(body)
        if not args.no_write:
            update_section("study", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
