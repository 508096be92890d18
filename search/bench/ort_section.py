"""The "ORT baselines" part of a pretrained-model benchmark: ONNX Runtime's own quantizations of
the teacher, timed side by side with the front, plotted, and checked for dominance."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import REPO


@dataclass(frozen=True)
class MetricLabels:
    """How a benchmark names its task's figures: the metric (``accuracy`` column) and one
    extra metric shown beside it (a key of the task's extra metrics)."""

    metric: str = "accuracy"
    extra_key: str = ""
    extra: str = ""


def ort_section(
    ctx: Any,
    study: Any,
    front: pd.DataFrame,
    settings: Any,
    figures: Path,
    labels: MetricLabels = MetricLabels(),
) -> tuple[list[str], list[str]]:
    """ONNX Runtime's ``quantize_dynamic`` / ``quantize_static`` of the teacher
    (:mod:`search.bench.ort_baselines`), timed side by side with the teacher and every front
    point: rows for the front's table, and a subsection with their table, two plots
    (``<figures>-ort-size.png``, ``-ort-latency.png``) and one line per baseline saying
    whether the front dominates it (validation figures)."""
    from evaluators.latency import ROUNDS, example_batch
    from search.bench.ort_baselines import ort_baselines
    from search.bench.ort_compare import (
        Point,
        dominance_line,
        dominators,
        plot_points,
        time_side_by_side,
    )
    from search.final import timing_candidate

    task, latency = ctx.task, ctx.spec.latency
    ort = ort_baselines(task, latency, settings)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    numbers = [int(n) for n in front["trial"]]
    entries: dict[str, Any] = {"teacher": task.model}
    for n in numbers:
        entries[f"trial {n}"] = timing_candidate(ctx, by_number[n]).model
    baselines = (ort.float_onnx, *ort.quantized)
    entries.update({b.name: b.data for b in baselines})
    timed = time_side_by_side(entries, example_batch(task, latency.batch_size), latency)
    rows = front.set_index("trial")
    front_points = [
        Point(
            f"trial {n}",
            float(rows.loc[n, "accuracy"]),
            float(rows.loc[n, "size_bytes"]),
            timed[f"trial {n}"].latency_ms,
        )
        for n in numbers
    ]
    points = {
        b.name: Point(b.name, b.val["accuracy"], b.size_bytes, timed[b.name].latency_ms)
        for b in baselines
    }
    float_bytes = ort.float_onnx.size_bytes
    metric = labels.metric

    def extra(b: Any) -> str:
        return f"{b.val.get(labels.extra_key, float('nan')):.3f} | " if labels.extra_key else ""

    extra_head = f"{labels.extra} (val) | " if labels.extra_key else ""
    lines = [
        "### ONNX Runtime's own quantization of the teacher (ORT baselines)",
        "",
        "What a user would do instead: export the float model to ONNX (frontier's export) and "
        "run `onnxruntime.quantization` on it (`search/bench/ort_baselines.py`). Each "
        "quantization's variants are scored on validation, which chooses; test reports. Bytes "
        "of an ORT baseline are its `.onnx` file (front points: the packed artifact); its "
        "share is of the float ONNX file "
        f"({float_bytes:,} B). Latency: one interleaved timing of the teacher "
        f"({latency.runtime}), every front point ({latency.runtime}) and the ONNX files "
        f"(ONNX Runtime, same session options), {ROUNDS} rounds, batch {latency.batch_size}, "
        f"{latency.threads} thread(s), {latency.warmup} warm-up and {latency.repeats} timed "
        "passes per round, quiet timing.",
        "",
        f"| model | options (chosen on validation) | {metric} (val) | {extra_head}"
        f"{metric} (test, 95% CI) | bytes | of float ONNX | latency ms (side by side) |",
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if labels.extra_key else ""),
    ]
    for b in baselines:
        t = b.test
        lines.append(
            f"| {b.name} | {b.options} | {b.val['accuracy']:.4f} | {extra(b)}"
            f"{t['test_accuracy']:.4f} "
            f"[{t['test_accuracy_low']:.4f}, {t['test_accuracy_high']:.4f}] | "
            f"{b.size_bytes:,} | {b.size_bytes / float_bytes:.1%} | "
            f"{timed[b.name].latency_ms:.2f} |"
        )
    teacher_ms = timed["teacher"].latency_ms
    lines += [
        "",
        f"Teacher ({latency.runtime}) in the same timing: {teacher_ms:.2f} ms. Front points in "
        "the same timing: "
        + ", ".join(f"{p.name} {p.latency_ms:.2f} ms" for p in front_points)
        + ".",
        "",
        f"Variants tried (validation {metric}): "
        + "; ".join(f"{v.options}: {v.val['accuracy']:.4f}" for b in ort.quantized for v in b.tried)
        + ".",
    ]
    if ort.static_failed:
        lines += ["", "quantize_static variants that failed: " + "; ".join(ort.static_failed)]
    lines += [
        "",
        f"Dominated by the front ({metric} >=, bytes <=, side-by-side latency <=, "
        "validation figures)?",
        "",
    ]
    for b in ort.quantized:
        lines.append(dominance_line(points[b.name], front_points, metric))
        if not dominators(points[b.name], front_points):  # which objective saves it
            two = ("accuracy", "size_bytes")
            lines.append("  " + dominance_line(points[b.name], front_points, metric, two))
    lines.append("")
    shown = [points[b.name] for b in baselines]
    for x, what in (("size_bytes", "size"), ("latency_ms", "latency")):
        png = figures.with_name(f"{figures.name}-ort-{what}.png")
        plot_points(
            front_points,
            shown,
            png if png.is_absolute() else REPO / png,
            x=x,
            ylabel=f"{metric} (validation)",
            title=f"{figures.name}: front and ONNX Runtime quantization ({what})",
        )
        lines.append(f"![{metric} against {what}: front and ORT baselines]({png.as_posix()})")
    for line in lines:
        print(line)
    out_rows = []
    for b in ort.quantized:
        t = b.test
        out_rows.append(
            f"| {b.name} (ORT baseline) | teacher, ONNX | {b.val['accuracy']:.4f} | {extra(b)}"
            f"{t['test_accuracy']:.4f} "
            f"[{t['test_accuracy_low']:.4f}, {t['test_accuracy_high']:.4f}] | "
            f"{b.size_bytes:,} | {b.size_bytes / float_bytes:.1%} | "
            f"{timed[b.name].latency_ms:.2f} (side by side) |"
        )
    return out_rows, lines


@dataclass
class FinishedStudy:
    """A study's finished run, as a benchmark reads it: its context, Optuna study, tables,
    and how long it took (``setup_s`` is NaN when read from an earlier run)."""

    spec: Any
    ctx: Any
    study: Any
    trials: pd.DataFrame
    front: pd.DataFrame
    ran: int
    wall_s: float
    setup_s: float


@contextmanager
def finished_study(study_file: Path, results: Path | None) -> Iterator[FinishedStudy]:
    """Run ``study_file`` in a fresh temporary folder (as ``frontier run`` would, final
    timing and test figures included), or read the finished run in ``results``."""
    from search.driver import open_study, run_study
    from search.final import final_figures
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec
    from search.stored import StoredStudy, open_stored

    if results is not None:  # a finished ``frontier run``: its own figures, nothing re-run
        stored = open_stored(str(results))
        final_figures(stored)  # a no-op when the run stored them
        trials, front = write_outputs(stored.study, stored.results_dir)
        ran, wall_s = run_span(stored.study)
        spec = stored.spec or load_spec(study_file)
        yield FinishedStudy(
            spec, stored.context(), stored.study, trials, front, ran, wall_s, float("nan")
        )
        return
    spec = load_spec(study_file)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        ctx = StudyContext(spec, out)
        setup_s = time.perf_counter() - t0
        url = f"sqlite:///{out / 'study.db'}"
        study = open_study(spec, url)
        summary = run_study(ctx, study, n_trials=spec.study.n_trials)
        # as ``frontier run`` ends: side-by-side latency and the test split of the front
        final_figures(StoredStudy(study, spec, out, url, _context=ctx))
        trials, front = write_outputs(study, out)
        yield FinishedStudy(spec, ctx, study, trials, front, summary.ran, summary.wall_s, setup_s)


def run_span(study: Any) -> tuple[int, float]:
    """Finished trials, and seconds from the first one's start to the last one's end."""
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    if not done:
        return 0, 0.0
    start = min(t.datetime_start for t in done if t.datetime_start is not None)
    end = max(t.datetime_complete for t in done)
    return len(done), (end - start).total_seconds()


def run_with(bench: Callable[..., str]) -> Callable[[argparse.Namespace], str]:
    """The ``run`` of a pretrained-model benchmark: ``bench`` called with the parsed
    arguments of :func:`add_arguments`."""

    def run(args: argparse.Namespace) -> str:
        return bench(
            args.study_file,
            figures=args.figures,
            calibration_rows=args.calibration_rows,
            quick_ort=args.quick_ort,
            results=args.results,
        )

    return run


def add_arguments(p: argparse.ArgumentParser, default_study: Path) -> None:
    """The arguments of a pretrained-model benchmark (``minilm``, ``efficientnet``)."""
    p.add_argument("study_file", nargs="?", type=Path, default=default_study)
    p.add_argument(
        "--figures",
        type=Path,
        default=Path("studies/bench"),
        help="folder of the ORT baseline plots (default: studies/bench)",
    )
    p.add_argument(
        "--calibration-rows",
        type=int,
        default=64,
        help="train rows calibrating ONNX Runtime's quantize_static (default 64)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="the results folder of a finished `frontier run` of the study: read, not re-run",
    )
    p.add_argument(
        "--quick-ort",
        action="store_true",
        help="quantize_static with MinMax, nodes with a weight and uint8 activations only",
    )
