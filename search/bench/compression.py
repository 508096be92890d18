"""The compression benchmark: does the search find what the field's best tools find?

``python -m search.bench compression [--seeds N]`` runs ``studies/digits_mlp.toml`` and
``studies/digits_cnn.toml`` from scratch in a temporary folder, once per study seed (0 to N-1;
the teacher, the students, the sampler and every trial are seeded from it), reports each
headline figure as the median over the seeds with its smallest and largest value, and for every
seed ends each run as ``frontier run`` does (:mod:`search.final`: the front and the baselines
re-timed side by side, measured on the test split), rebuilds every front point from its stored
configuration (same seed, so the same weights; the validation accuracy is checked against the
stored one) and reports, choosing on the **validation** split (the test split is shown beside,
never chooses):

- digits-mlp: the largest size reduction (fp32 teacher bytes / packed bytes) of a front point
  within 0.5 points of the teacher's validation accuracy (target: at least 40x, Deep
  Compression's hand-tuned LeNet-300-100 figure);
- digits-cnn: the largest latency reduction (fp32 teacher / candidate, final side-by-side
  figures in the study's runtime, batch and threads) of a front point within 1 point of the
  teacher's validation accuracy (target: at least 2x); and whether a front point dominates or
  matches the uniform int8 baseline;
- both candidates and the teacher timed in every runtime, to show which runtime is fastest
  here for which model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from evaluators.latency import RUNTIMES, LatencySettings, example_batch, time_interleaved
from search.bench.common import SMOKE_STUDY, Benchmark, machine, tiny_study, today
from search.bench.compression_runs import (
    StudyRun,
    front_with_test_accuracy,
    run_fresh,
    teacher_row,
    within,
)
from search.results import quoted_latency

MLP_STUDY = Path("studies/digits_mlp.toml")
CNN_STUDY = Path("studies/digits_cnn.toml")


@dataclass(frozen=True)
class Timing:
    """The interleaved timing of the digits-cnn models in every runtime."""

    rounds: int = 5
    warmup: int = 10
    repeats: int = 40


@dataclass
class _Figures:
    """One seed's headline figures (NaN where no front point qualifies)."""

    size_x: float = float("nan")
    latency_x: float = float("nan")
    search_latency_x: float = float("nan")
    dominating: float = float("nan")
    mlp_test_drop: float = float("nan")
    cnn_test_drop: float = float("nan")
    lines: list[str] = field(default_factory=list)


#: The summary's rows: label, target, attribute of :class:`_Figures`, format.
SUMMARY = (
    ("digits-mlp: size reduction within 0.5 points (validation)", ">= 40x", "size_x", "{:.1f}x"),
    (
        "digits-cnn: latency reduction within 1 point (validation), final side-by-side figures",
        ">= 2x",
        "latency_x",
        "{:.2f}x",
    ),
    (
        "digits-cnn: the same point's ratio with the search-time figures (not quoted)",
        "",
        "search_latency_x",
        "{:.2f}x",
    ),
    (
        "digits-cnn: front points dominating or matching uniform int8",
        ">= 1",
        "dominating",
        "{:.0f}",
    ),
    (
        "digits-mlp: chosen point's test-split drop (points, reported only)",
        "",
        "mlp_test_drop",
        "{:.2f}",
    ),
    (
        "digits-cnn: chosen point's test-split drop (points, reported only)",
        "",
        "cnn_test_drop",
        "{:.2f}",
    ),
)


def _interleaved(
    runtime: str,
    models: dict[str, torch.nn.Module],
    batch: tuple[torch.Tensor, ...],
    threads: int,
    timing: Timing,
) -> dict[str, float]:
    """Median latency of each model in ``runtime``, timed side by side (interleaved rounds,
    quiet timing, alone on the machine: :func:`evaluators.latency.time_interleaved`)."""
    settings = LatencySettings(
        batch_size=len(batch[0]),
        threads=threads,
        warmup=timing.warmup,
        repeats=timing.repeats,
        runtime=runtime,
    )
    figures = time_interleaved(models, batch, settings, rounds=timing.rounds)
    return {name: f.latency_ms for name, f in figures.items()}


def bench_compression(
    out: Path | None = None,
    *,
    mlp_study: Path = MLP_STUDY,
    cnn_study: Path = CNN_STUDY,
    timing: Timing = Timing(),
    seeds: int = 3,
) -> str:
    """Run both studies once per seed; return the Markdown section for BENCHMARKS.md.

    The studies run in ``out`` (kept, for a look at every trial) or in a temporary folder.
    """
    if seeds < 1:
        raise ValueError(f"'seeds' must be an int >= 1. Got {seeds!r} instead.")
    per_seed: list[_Figures] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = out or Path(tmp)
        for seed in range(seeds):
            figures = _Figures()
            figures.lines += [f"### Study seed {seed}", ""]
            mlp = run_fresh(mlp_study, root / f"mlp-seed{seed}", seed)
            figures.lines += _mlp_section(mlp, figures)
            cnn = run_fresh(cnn_study, root / f"cnn-seed{seed}", seed)
            figures.lines += _cnn_section(cnn, timing, figures)
            per_seed.append(figures)
    lines = [
        "## Compression targets: `digits-mlp` size, `digits-cnn` latency",
        "",
        f"Command: `python -m search.bench compression --seeds {seeds}` (each study run from "
        f"scratch once per study seed, 0 to {seeds - 1}: the teacher, the students, the "
        "sampler and every trial are seeded from it; every front point rebuilt from its "
        "configuration and scored on the test split).",
        f"Machine: {machine()}. Date: {today()}.",
        "",
        "The searches choose on the validation split, and so does this benchmark: a point "
        "qualifies by its validation accuracy; its test-split accuracy is reported beside "
        "and chooses nothing. Both splits hold 360 rows, so one row is 0.28 points: targets "
        "of 0.5 and 1 point are one and three rows. Latencies and their ratios are the final "
        "figures: the front and the baselines re-timed side by side at the end of the run "
        "(interleaved rounds, quiet timing); the search-time figure is shown apart.",
        "",
        f"Median over the {seeds} study seed(s), with the smallest and largest value:",
        "",
        "| figure | target | median | min | max | per seed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, target, attr, fmt in SUMMARY:
        values = [float(getattr(f, attr)) for f in per_seed]
        lines.append(_summary_row(label, target, values, fmt))
    lines.append("")
    for figures in per_seed:
        lines += figures.lines
    return "\n".join(lines)


def _summary_row(label: str, target: str, values: list[float], fmt: str) -> str:
    """Median, min and max of the seeds' values that exist (a seed without a qualifying
    point counts as missing, and the row says how many are)."""
    known = [v for v in values if v == v]
    each = ", ".join(fmt.format(v) if v == v else "none" for v in values)
    if not known:
        return f"| {label} | {target or '-'} | none | - | - | {each} |"
    stats = (statistics.median(known), min(known), max(known))
    return (
        f"| {label} | {target or '-'} | "
        + " | ".join(fmt.format(v) for v in stats)
        + (f" | {each} |")
    )


def _mlp_section(run: StudyRun, figures: _Figures) -> list[str]:
    df = front_with_test_accuracy(run)
    teacher = teacher_row(df)
    ok = within(df, teacher, 0.5)
    best = ok.loc[ok["size_bytes"].idxmin()] if len(ok) else None
    ratio = float(teacher["size_bytes"] / best["size_bytes"]) if best is not None else float("nan")
    figures.size_x = ratio
    if best is not None:
        figures.mlp_test_drop = 100 * float(teacher["test_accuracy"] - best["test_accuracy"])
    print(
        f"seed {run.seed} digits-mlp: {len(run.trials)} trials in {run.wall_s:.0f}s, "
        f"front {len(run.front)}; "
        f"teacher validation {100 * teacher['accuracy']:.2f}%, best {ratio:.1f}x within 0.5 pt",
        flush=True,
    )
    lines = [
        f"#### `{run.study_file.as_posix()}`, seed {run.seed}: smallest front point within "
        "0.5 points of the teacher "
        "(validation split)",
        "",
        f"{len(run.trials)} trials in {run.wall_s:.0f} s; {len(run.front)} front points; all "
        f"rebuilt front points reproduce their validation accuracy: "
        f"{bool(df['rebuilt_matches'].all())}.",
        "",
        "| model | val acc. % | test acc. % | size (bytes) | smaller than fp32 | configuration |",
        "| --- | --- | --- | --- | --- | --- |",
        _row("fp32 teacher", teacher, teacher),
    ]
    if best is not None:
        lines.append(_row(f"front trial {int(best['trial'])}", best, teacher))
    lines += [
        "",
        f"**Best size reduction within 0.5 points (validation): {ratio:.1f}x** (target 40x).",
        "",
    ]
    return lines


def _row(name: str, row: pd.Series, teacher: pd.Series) -> str:
    from spaces import CompressionConfig

    config = CompressionConfig.from_json(row["config"]).to_dict()
    config.pop("version")
    return (
        f"| {name} | {100 * row['accuracy']:.2f} | {100 * row['test_accuracy']:.2f} | "
        f"{int(row['size_bytes'])} | {teacher['size_bytes'] / row['size_bytes']:.1f}x | "
        f"`{config}` |"
    )


def _cnn_section(run: StudyRun, timing: Timing, figures: _Figures) -> list[str]:
    df = front_with_test_accuracy(run)
    spec = run.ctx.spec
    df = df.assign(quoted_ms=quoted_latency(df))  # the final side-by-side figure
    teacher = teacher_row(df)
    ok = within(df, teacher, 1.0)
    best = ok.loc[ok["quoted_ms"].idxmin()] if len(ok) else None
    int8 = df[df["baseline"] == "uniform-int8"].iloc[0]
    front = df[df["front"].astype(bool)]
    dominating = front[
        (front["accuracy"] >= int8["accuracy"])
        & (front["size_bytes"] <= int8["size_bytes"])
        & (front["quoted_ms"] <= int8["quoted_ms"])
    ]
    batch = example_batch(run.ctx.task, spec.latency.batch_size)
    models = {"teacher": teacher["candidate"].model, "uniform-int8": int8["candidate"].model}
    if best is not None:
        models["best"] = best["candidate"].model
    threads = spec.latency.threads
    table = {rt: _interleaved(rt, models, batch, threads, timing) for rt in sorted(RUNTIMES)}
    nan = float("nan")
    final_ratio = float(teacher["quoted_ms"] / best["quoted_ms"]) if best is not None else nan
    search_ratio = float(teacher["latency_ms"] / best["latency_ms"]) if best is not None else nan
    figures.latency_x, figures.search_latency_x = final_ratio, search_ratio
    figures.dominating = float(len(dominating))
    if best is not None:
        figures.cnn_test_drop = 100 * float(teacher["test_accuracy"] - best["test_accuracy"])
    rt = spec.latency.runtime
    print(
        f"seed {run.seed} digits-cnn: {len(run.trials)} trials in {run.wall_s:.0f}s, "
        f"front {len(run.front)}; "
        f"best latency {final_ratio:.2f}x (final, side by side; {search_ratio:.2f}x with the "
        f"search-time figures); uniform int8 dominated or matched by {len(dominating)} front "
        "point(s)",
        flush=True,
    )
    lines = [
        f"#### `{run.study_file.as_posix()}`, seed {run.seed}: fastest front point within "
        "1 point of the teacher "
        f"(validation split), runtime `{rt}`, batch {spec.latency.batch_size}, "
        f"{spec.latency.threads} thread(s)",
        "",
        f"{len(run.trials)} trials in {run.wall_s:.0f} s; {len(run.front)} front points; all "
        f"rebuilt front points reproduce their validation accuracy: "
        f"{bool(df['rebuilt_matches'].all())}.",
        "",
        "| model | val acc. % | test acc. % | size (bytes) | final latency (ms) | "
        "search-time latency (ms) | configuration |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    named = [("fp32 teacher", teacher), ("uniform int8 baseline", int8)]
    if best is not None:
        named.append((f"front trial {int(best['trial'])}", best))
    for name, row in named:
        from spaces import CompressionConfig

        config = CompressionConfig.from_json(row["config"]).to_dict()
        config.pop("version")
        lines.append(
            f"| {name} | {100 * row['accuracy']:.2f} | {100 * row['test_accuracy']:.2f} | "
            f"{int(row['size_bytes'])} | {_final_text(row)} | {row['latency_ms']:.3f} | "
            f"`{config}` |"
        )
    lines += [
        "",
        f"**Latency reduction within 1 point (validation): {final_ratio:.2f}x** (final "
        f"figures, timed side by side; target 2x); {search_ratio:.2f}x with the search-time "
        f"figures. Uniform int8 baseline dominated or matched by {len(dominating)} front "
        "point(s) (validation accuracy, size, final latency).",
        "",
        f"Every runtime, same models, timed side by side: median of {timing.rounds} "
        f"interleaved rounds of {timing.repeats} passes (ms):",
        "",
        "| runtime | " + " | ".join(models) + " |",
        "| --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for name, row in table.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{row[m]:.3f}" for m in models) + " |")
    lines.append("")
    return lines


def _final_text(row: pd.Series) -> str:
    final = row.get("final_latency_ms")
    if final is None or not pd.notna(final):
        return "-"
    return f"{final:.3f} (spread {100 * row['final_latency_spread']:.0f}%)"


ROWS = (
    "fp32 teacher",
    "uniform int8 baseline",
    "`onnxruntime`",
    "`torch`",
    *(label for label, *_ in SUMMARY),
)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="keep the studies' results here")
    p.add_argument(
        "--seeds", type=int, default=3, help="study seeds (0 to N-1); figures are their median"
    )
    p.set_defaults(mlp_study=MLP_STUDY, cnn_study=CNN_STUDY, timing=Timing())


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    return argparse.Namespace(
        **{
            **vars(args),
            # the smallest built-in task in place of both studies: the code path is the same
            "mlp_study": tiny_study(SMOKE_STUDY, folder / "mlp"),
            "cnn_study": tiny_study(SMOKE_STUDY, folder / "cnn"),
            "timing": Timing(rounds=1, warmup=1, repeats=30),
            "seeds": 1,
        }
    )


BENCHMARK = Benchmark(
    name="compression",
    help="digits-mlp size and digits-cnn latency targets, chosen on validation, over seeds",
    add_arguments=_add_arguments,
    run=lambda args: bench_compression(
        args.out,
        mlp_study=args.mlp_study,
        cnn_study=args.cnn_study,
        timing=args.timing,
        seeds=args.seeds,
    ),
    smoke=_smoke,
    rows=lambda args: ROWS,
)
