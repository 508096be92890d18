"""Benchmarks that print what they measure and update ``BENCHMARKS.md``.

Usage::

    python -m search.bench study [STUDY.toml] [--repeats 3]
    python -m search.bench predictor [--candidates 40]
    python -m search.bench minilm [STUDY.toml]
    python -m search.bench compression
    python -m search.bench samplers | early-stopping | ray [STUDY.toml] ...  (bench_search.py)
    python -m search.bench teachers [STUDY.toml ...] [--seeds 3]  (bench_teachers.py)

Each benchmark runs fresh studies in a temporary folder (so caches do not flatter it),
prints its figures and rewrites its own section of ``BENCHMARKS.md`` (between
``<!-- bench:NAME -->`` markers), recording the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _random_config(space: Any, rng: random.Random) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    params: dict[str, Any] = {}
    for name, dist in space.distributions().items():
        if isinstance(dist, CategoricalDistribution):
            params[name] = rng.choice(list(dist.choices))
        elif isinstance(dist, FloatDistribution):
            steps = round((dist.high - dist.low) / (dist.step or 1))
            params[name] = dist.low + rng.randint(0, steps) * (dist.step or 0)
    return space.config_from_params(params)


def bench_predictor(study_files: Sequence[Path], candidates: int, rounds: int = 3) -> str:
    """Predicted against measured latency for random candidates of each study's task.

    All candidates are predicted first (the table fills as new operators appear), then each
    is measured as the study measures it with ``quiet = true`` (each timed pass in a quiet
    moment of the machine, what the prediction is for), ``rounds`` times round-robin over the
    candidates (seconds apart). The fastest round is the reference; how often a single round
    lands within +-10% of it is the noise floor.
    """
    from dataclasses import replace

    from evaluators.latency import LatencyPredictor, gate, measure
    from search.objective import StudyContext
    from search.spec import load_spec
    from spaces import FinetuneSettings, compress

    lines = []
    rows = []
    for study_file in study_files:
        spec = load_spec(study_file)
        # student weights do not change the operators: a 1-epoch distillation is enough here
        spec = replace(spec, distillation=replace(spec.distillation, epochs=1))
        with tempfile.TemporaryDirectory() as tmp:
            ctx = StudyContext(spec, Path(tmp))
            t0 = time.perf_counter()
            predictor = LatencyPredictor(ctx.task, spec.latency, root=Path(tmp) / "tables")
            predictor.predict(ctx.task.model)
            build_s = time.perf_counter() - t0
            rng = random.Random(0)
            built, predicted, predict_s = [], [], []
            for i in range(candidates):
                config = _random_config(ctx.space, rng)
                cand = compress(ctx.pool, config, finetune=FinetuneSettings(epochs=0), seed=i)
                t1 = time.perf_counter()
                predicted.append(predictor.predict(cand.model))
                predict_s.append(time.perf_counter() - t1)
                built.append((config, cand))
            timed: list[list[float]] = [[] for _ in built]
            for _ in range(rounds):
                for i, (_, cand) in enumerate(built):
                    figures = measure(cand.model, predictor.batch, spec.latency, quiet=True)
                    timed[i].append(figures["latency_ms"])
            errors, single, repeatable = [], [], []
            for (config, _), pred, times, p_s in zip(
                built, predicted, timed, predict_s, strict=True
            ):
                measured = min(times)
                err = pred / measured - 1
                errors.append(err)
                single.append(statistics.mean(abs(pred / t - 1) <= 0.10 for t in times))
                repeatable.append(statistics.mean(abs(t / measured - 1) <= 0.10 for t in times))
                rows.append(
                    {
                        "task": spec.task,
                        "student": config.student,
                        "predicted_ms": pred,
                        "measured_ms": measured,
                        "error": err,
                        "predict_s": p_s,
                    }
                )
            within = sum(abs(e) <= 0.10 for e in errors) / len(errors)
            within_single = statistics.mean(single)
            floor = statistics.mean(repeatable)
            med_abs = statistics.median(abs(e) for e in errors)
            new_s = statistics.median(predict_s)
            print(
                f"{spec.task} ({spec.latency.runtime}): {within:.0%} of {len(errors)} "
                f"candidates within +-10% of the fastest round (median |error| {med_abs:.1%}), "
                f"{within_single:.0%} of single rounds; single rounds within +-10% of the "
                f"fastest: {floor:.0%}; table built in {build_s:.1f}s",
                flush=True,
            )
            row = (spec.task, study_file, spec.latency, within, within_single, med_abs, floor)
            lines.append((*row, len(errors), build_s, new_s))
    df = pd.DataFrame(rows)
    by_student = (
        df.groupby(["task", "student"])
        .agg(
            n=("error", "size"),
            predicted_ms=("predicted_ms", "median"),
            measured_ms=("measured_ms", "median"),
            median_error=("error", "median"),
            within_10=("error", lambda e: (e.abs() <= 0.10).mean()),
        )
        .reset_index()
    )
    cmd = f"python -m search.bench predictor --candidates {candidates}"
    probe = gate()
    quiet_share = probe.quiet_runs / max(1, probe.quiet_runs + probe.loaded_runs)
    out = [
        "## Latency prediction (lookup table)",
        "",
        f"Command: `{cmd}` (a fresh table per study; random candidates of the study's space, "
        "built without fine-tuning; students distilled for one epoch, as weights do not change "
        "the operators). Every candidate is predicted first, then measured as the study "
        f"measures it (`evaluators.latency.measure`: {lines[0][2].builds if lines else 5} "
        "builds, median of the pooled timed passes) with `quiet = true`: each timed pass "
        "between two quiet probes of the machine (`evaluators.latency.quiet`; this machine "
        "switches between a quiet state and states 1.3-2x slower every second or so; in this run "
        f"{quiet_share:.0%} of all timed runs, table entries included, were between quiet "
        f"probes, the rest on a machine not quiet for 10 s), {rounds} times, round-robin over "
        "the candidates (seconds apart). The reference is the candidate's fastest round. "
        "'Single rounds' compares the prediction with each round instead; 'rounds within "
        "+-10% of fastest' is the share of single measurements within +-10% of the reference: "
        "the noise floor of the figures beside it.",
        f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. Load average after the "
        f"run {_load()}.",
        "",
        "| task | study | runtime, threads, batch | predicted within +-10% of measured "
        "(fastest round) | median abs error | predicted within +-10% of single rounds | "
        "rounds within +-10% of fastest | table build (s) | median predict (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, f, lat, within, single_, med_abs, floor, n, build_s, new_s in lines:
        out.append(
            f"| {task} | `{f.as_posix()}` | {lat.runtime}, {lat.threads}, {lat.batch_size} | "
            f"**{within:.0%}** of {n} | {med_abs:.1%} | {single_:.0%} | {floor:.0%} | "
            f"{build_s:.1f} | {new_s:.2f} |"
        )
    out += [
        "",
        "By student (medians):",
        "",
        "| task | student | n | predicted ms | measured ms (fastest round) | median error | "
        "within +-10% |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in by_student.itertuples():
        out.append(
            f"| {r.task} | {r.student} | {r.n} | {r.predicted_ms:.4f} | {r.measured_ms:.4f} | "
            f"{r.median_error:+.1%} | {r.within_10:.0%} |"
        )
    return "\n".join(out)


def bench_minilm(study_file: Path) -> str:
    """The MiniLM study: the smallest front point keeping mean cosine >= 0.99."""
    from search.driver import open_study, run_study
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec

    spec = load_spec(study_file)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        ctx = StudyContext(spec, out)
        setup_s = time.perf_counter() - t0
        study = open_study(spec, f"sqlite:///{out / 'study.db'}")
        summary = run_study(ctx, study, n_trials=spec.study.n_trials)
        trials, front = write_outputs(study, out)
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    ok = front[front["accuracy"] >= 0.99].sort_values("size_bytes")
    cmd = f"python -m search.bench minilm {study_file.as_posix()}"
    head = [
        "## MiniLM (all-MiniLM-L6-v2 sentence encoder)",
        "",
        f"Command: `{cmd}` (fresh results folder; {summary.ran} trials in "
        f"{summary.wall_s:.0f}s, plus {setup_s:.0f}s loading the model and its reference "
        "embeddings).",
        f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. Load average {_load()}.",
        "",
        f"Float model: {int(teacher['size_bytes']):,} bytes, latency "
        f"{teacher['latency_ms']:.1f} ms (median; batch {spec.latency.batch_size}, "
        f"{spec.latency.threads} thread(s)).",
        "",
        "Front points keeping mean cosine similarity >= 0.99 (validation), smallest first:",
        "",
        "| trial | student | cosine (val) | nn agreement (val) | cosine (test, 95% CI) | size "
        "(bytes) | of fp32 size | latency ms (median / p90) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    body = []
    for r in ok.itertuples():
        body.append(
            f"| {r.trial} | {r.student} | {r.accuracy:.4f} | {r.nn_agreement:.3f} | "
            f"{r.test_accuracy:.4f} [{r.test_accuracy_low:.4f}, {r.test_accuracy_high:.4f}] | "
            f"{int(r.size_bytes):,} | {r.size_bytes / teacher['size_bytes']:.1%} | "
            f"{r.latency_ms:.1f} / {r.latency_p90_ms:.1f} |"
        )
    if ok.empty:
        body.append("| none | | | | | | | |")
    for line in body:
        print(line)
    return "\n".join(head + body)


def bench_report(study_file: Path) -> str:
    """Time ``report`` (first: re-measuring the front on the test split; again: reusing it) and
    ``export`` of the knee point on a fresh run of ``study_file``; check ONNX against the report.
    """
    from search.driver import open_study, run_study
    from search.export import export_trial
    from search.objective import StudyContext
    from search.report import build_report, write_report
    from search.spec import load_spec
    from search.stored import open_stored

    spec = load_spec(study_file)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        ctx = StudyContext(spec, out)
        study = open_study(spec, f"sqlite:///{out / 'study.db'}", results_dir=out)
        run_study(ctx, study, n_trials=spec.study.n_trials)
        run_s = time.perf_counter() - t0
        timings = {}
        for label in ("first", "again"):
            t0 = time.perf_counter()
            report = build_report(open_stored(str(study_file), out=out))
            files = write_report([report], out / label)
            timings[label] = time.perf_counter() - t0
        html_mb = files.html.stat().st_size / 1e6
        knee = report.knee_trial
        if knee is None:
            raise RuntimeError("the study's front is empty; nothing to export")
        t0 = time.perf_counter()
        result = export_trial(open_stored(str(study_file), out=out), knee, out / "export")
        export_s = time.perf_counter() - t0
        reported = float(report.front.loc[report.front["trial"] == knee, "test_accuracy"].iloc[0])
    cmd = f"python -m search.bench report {study_file.as_posix()}"
    print(
        f"run {run_s:.1f}s; report {timings['first']:.1f}s (re-measuring "
        f"{len(report.front)} front points), again {timings['again']:.1f}s; export "
        f"{export_s:.1f}s; ONNX test accuracy {result.onnx_test_accuracy:.4f} vs reported "
        f"{reported:.4f}",
        flush=True,
    )
    return "\n".join(
        [
            f"## Report and export: `{study_file.as_posix()}`",
            "",
            f"Command: `{cmd}` (a fresh run of the study, then `report` twice and `export` of "
            "the knee point, in process).",
            f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. One run.",
            "",
            "| figure | value |",
            "| --- | --- |",
            f"| study run ({spec.study.n_trials} trials, teacher included) (s) | {run_s:.1f} |",
            f"| report, first (re-measures {len(report.front)} front points and the baselines "
            f"on the test split, writes HTML, Markdown, 5 PNGs) (s) | {timings['first']:.1f} |",
            f"| report again (test figures reused from the study) (s) | {timings['again']:.1f} |",
            f"| report.html size (MB, plotly.js inlined) | {html_mb:.1f} |",
            f"| export of the knee point (trial {knee}: rebuild, ONNX, onnxruntime check) (s) | "
            f"{export_s:.1f} |",
            f"| knee point: size (B) / test accuracy in the report / ONNX Runtime test accuracy | "
            f"{result.size_bytes:,} / {reported:.4f} / {result.onnx_test_accuracy:.4f} |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("study", help="the default study: speed, overhead, size reduction")
    p.add_argument("study_file", nargs="?", type=Path, default=Path("studies/digits_cnn.toml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    p = sub.add_parser("predictor", help="latency predictor: share within +-10% of measured")
    p.add_argument(
        "study_files",
        nargs="*",
        type=Path,
        default=[Path("studies/digits_cnn.toml"), Path("studies/mnist1d_cnn.toml")],
    )
    p.add_argument("--candidates", type=int, default=40)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    p = sub.add_parser("report", help="report and export timings on a fresh run of a study")
    p.add_argument("study_file", nargs="?", type=Path, default=Path("studies/digits_cnn.toml"))
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    p = sub.add_parser("minilm", help="MiniLM: fidelity >= 0.99 at what size and latency")
    p.add_argument("study_file", nargs="?", type=Path, default=Path("studies/minilm.toml"))
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    c = sub.add_parser(
        "compression", help="digits-mlp size and digits-cnn latency targets, on the test split"
    )
    c.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    c.add_argument("--out", type=Path, default=None, help="keep the studies' results here")
    from search import bench_search, bench_teachers  # samplers, early-stopping, ray; teachers

    bench_search.add_parsers(sub)
    bench_teachers.add_parser(sub)
    args = parser.parse_args(argv)
    if bench_search.run(args) or bench_teachers.run(args):
        return 0
    if args.bench == "compression":
        from search.bench_compression import bench_compression

        body = bench_compression(args.out)
        name = "compression"
    elif args.bench == "study":
        body = bench_study(args.study_file, args.repeats)
        name = "study"
    elif args.bench == "report":
        body = bench_report(args.study_file)
        name = "report"
    elif args.bench == "predictor":
        body = bench_predictor(args.study_files, args.candidates)
        name = "predictor"
    else:
        body = bench_minilm(args.study_file)
        name = "minilm"
    print(body)
    if not args.no_write:
        update_section(name, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
