"""``python -m search.bench predictor``: predicted against measured latency of random candidates."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import (
    SMOKE_STUDY,
    Benchmark,
    load_average,
    machine,
    tiny_study,
    today,
)

DEFAULT_STUDIES = [Path("studies/digits_cnn.toml"), Path("studies/mnist1d_cnn.toml")]


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


def bench_predictor(
    study_files: Sequence[Path],
    candidates: int,
    rounds: int = 3,
    *,
    table_rounds: int | None = None,
    op_budget_s: float | None = None,
) -> str:
    """Predicted against measured latency for random candidates of each study's task.

    All candidates are predicted first (the table fills as new operators appear), then each
    is measured as the study measures it with ``quiet = true`` (each timed pass in a quiet
    moment of the machine, what the prediction is for), ``rounds`` times round-robin over the
    candidates (seconds apart). The fastest round is the reference; how often a single round
    lands within +-10% of it is the noise floor. ``table_rounds`` and ``op_budget_s`` replace
    the table's own timing rounds and seconds per operator entry (smoke tests use fewer).
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
            if table_rounds is not None:
                predictor.table.ROUNDS = table_rounds
            if op_budget_s is not None:
                predictor.table.OP_BUDGET_S = op_budget_s
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
        f"Machine: {machine()}. Date: {today()}. Load average after the run {load_average()}.",
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_files", nargs="*", type=Path, default=DEFAULT_STUDIES)
    p.add_argument("--candidates", type=int, default=40)
    p.set_defaults(rounds=3, table_rounds=None, op_budget_s=None)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    study_file = tiny_study(
        SMOKE_STUDY if args.study_files == DEFAULT_STUDIES else args.study_files[0], folder
    )
    return argparse.Namespace(
        **{
            **vars(args),
            "study_files": [study_file],
            "candidates": 2,
            "rounds": 1,
            "table_rounds": 1,
            "op_budget_s": 0.01,
        }
    )


def _rows(args: argparse.Namespace) -> list[str]:
    from search.spec import load_spec

    return [load_spec(f).task for f in args.study_files]


BENCHMARK = Benchmark(
    name="predictor",
    help="latency predictor: share within +-10% of measured",
    add_arguments=_add_arguments,
    run=lambda args: bench_predictor(
        args.study_files,
        args.candidates,
        args.rounds,
        table_rounds=args.table_rounds,
        op_budget_s=args.op_budget_s,
    ),
    smoke=_smoke,
    rows=_rows,
)
