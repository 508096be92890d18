"""``python -m search.bench minilm``: the MiniLM study; fidelity >= 0.99 at what size, latency."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import REPO, Benchmark, load_average, machine, tiny_study, today

DEFAULT_STUDY = Path("studies/minilm.toml")
DEFAULT_FIGURES = Path("studies/bench")
#: The labels of the ORT baseline rows (the smoke test checks them)
ORT_ROWS = ("ORT quantize_dynamic", "ORT quantize_static")


def bench_minilm(
    study_file: Path,
    *,
    figures: Path = DEFAULT_FIGURES,
    calibration_rows: int = 64,
    quick_ort: bool = False,
    results: Path | None = None,
) -> str:
    """The MiniLM study: the smallest front point keeping mean cosine >= 0.99, and ONNX
    Runtime's own quantizations of the teacher beside the front (:func:`ort_section`).
    With ``results`` (the results folder of a finished ``frontier run`` of the study), its
    trials are read instead of running the study again."""
    from search.bench.ort_baselines import OrtSettings
    from search.driver import open_study, run_study
    from search.final import final_figures
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec
    from search.stored import StoredStudy

    settings = OrtSettings(calibration_rows=calibration_rows)
    if quick_ort:
        settings = replace(
            settings, methods=("minmax",), activations=("uint8",), ops=("weight-nodes",)
        )
    if results is not None:  # a finished ``frontier run``: its own figures, nothing re-run
        from search.stored import open_stored

        stored = open_stored(str(results))
        ctx = stored.context()
        final_figures(stored)  # a no-op when the run stored them
        trials, front = write_outputs(stored.study, stored.results_dir)
        ran, wall_s = _run_span(stored.study)
        setup_s = float("nan")
        ort_rows, ort_lines = ort_section(
            ctx, stored.study, front, settings, figures / study_file.stem
        )
        spec = stored.spec or load_spec(study_file)
    else:
        spec = load_spec(study_file)
    with tempfile.TemporaryDirectory() as tmp:
        if results is None:
            out = Path(tmp)
            t0 = time.perf_counter()
            ctx = StudyContext(spec, out)
            setup_s = time.perf_counter() - t0
            url = f"sqlite:///{out / 'study.db'}"
            study = open_study(spec, url)
            summary = run_study(ctx, study, n_trials=spec.study.n_trials)
            ran, wall_s = summary.ran, summary.wall_s
            # as ``frontier run`` ends: side-by-side latency and the test split of the front
            final_figures(StoredStudy(study, spec, out, url, _context=ctx))
            trials, front = write_outputs(study, out)
            ort_rows, ort_lines = ort_section(
                ctx, study, front, settings, figures / study_file.stem
            )
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    ok = front[front["accuracy"] >= 0.99].sort_values("size_bytes")
    cmd = f"python -m search.bench minilm {study_file.as_posix()}"
    if results is None:
        how = (
            f"(fresh results folder; {ran} trials in {wall_s:.0f}s, plus {setup_s:.0f}s "
            "loading the model and its reference embeddings)."
        )
    else:
        cmd = f"frontier run {study_file.as_posix()} --out DIR`, then `{cmd} --results DIR"
        how = (
            f"({ran} trials, {wall_s / 60:.0f} minutes from the first trial's start to the "
            "last one's end; the final timing and test figures are the run's own)."
        )
    head = [
        "## MiniLM (all-MiniLM-L6-v2 sentence encoder)",
        "",
        f"Command: `{cmd}` {how}",
        f"Machine: {machine()}. Date: {today()}. Load average {load_average()}.",
        "",
        f"Float model: {int(teacher['size_bytes']):,} bytes, latency "
        f"{teacher['final_latency_ms']:.1f} ms (final figure, timed side by side with the "
        f"front; batch {spec.latency.batch_size}, {spec.latency.threads} thread(s)).",
        "",
        "Front points keeping mean cosine similarity >= 0.99 (validation), smallest first:",
        "",
        "| trial | student | cosine (val) | nn agreement (val) | cosine (test, 95% CI) | size "
        "(bytes) | of fp32 size | latency ms (final / search-time) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    body = []
    for r in ok.itertuples():
        body.append(
            f"| {r.trial} | {r.student} | {r.accuracy:.4f} | {r.nn_agreement:.3f} | "
            f"{r.test_accuracy:.4f} [{r.test_accuracy_low:.4f}, {r.test_accuracy_high:.4f}] | "
            f"{int(r.size_bytes):,} | {r.size_bytes / teacher['size_bytes']:.1%} | "
            f"{r.final_latency_ms:.1f} / {r.latency_ms:.1f} |"
        )
    if ok.empty:
        body.append("| none | | | | | | | |")
    body += [
        *ort_rows,
        "",
        "ORT rows: ONNX Runtime's quantization of the teacher (section below); their size is "
        "the `.onnx` file's, their share is of the float ONNX file, their latency the "
        "side-by-side figure of the section below.",
    ]
    for line in body:
        print(line)
    return "\n".join(head + body + ["", *ort_lines])


def _run_span(study: Any) -> tuple[int, float]:
    """Finished trials, and seconds from the first one's start to the last one's end."""
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    if not done:
        return 0, 0.0
    start = min(t.datetime_start for t in done if t.datetime_start is not None)
    end = max(t.datetime_complete for t in done)
    return len(done), (end - start).total_seconds()


def ort_section(
    ctx: Any, study: Any, front: pd.DataFrame, settings: Any, figures: Path
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
        "| model | options (chosen on validation) | cosine (val) | nn agreement (val) | "
        "cosine (test, 95% CI) | bytes | of float ONNX | latency ms (side by side) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in baselines:
        t = b.test
        lines.append(
            f"| {b.name} | {b.options} | {b.val['accuracy']:.4f} | "
            f"{b.val.get('nn_agreement', float('nan')):.3f} | {t['test_accuracy']:.4f} "
            f"[{t['test_accuracy_low']:.4f}, {t['test_accuracy_high']:.4f}] | "
            f"{b.size_bytes:,} | {b.size_bytes / float_bytes:.1%} | "
            f"{timed[b.name].latency_ms:.1f} |"
        )
    teacher_ms = timed["teacher"].latency_ms
    lines += [
        "",
        f"Teacher ({latency.runtime}) in the same timing: {teacher_ms:.1f} ms. Front points in "
        "the same timing: "
        + ", ".join(f"{p.name} {p.latency_ms:.1f} ms" for p in front_points)
        + ".",
        "",
        "Variants tried (validation cosine): "
        + "; ".join(f"{v.options}: {v.val['accuracy']:.4f}" for b in ort.quantized for v in b.tried)
        + ".",
    ]
    if ort.static_failed:
        lines += ["", "quantize_static variants that failed: " + "; ".join(ort.static_failed)]
    lines += [
        "",
        "Dominated by the front (cosine >=, bytes <=, side-by-side latency <=, "
        "validation figures)?",
        "",
    ]
    for b in ort.quantized:
        lines.append(dominance_line(points[b.name], front_points, "cosine"))
        if not dominators(points[b.name], front_points):  # which objective saves it
            two = ("accuracy", "size_bytes")
            lines.append("  " + dominance_line(points[b.name], front_points, "cosine", two))
    lines.append("")
    shown = [points[b.name] for b in baselines]
    for x, what in (("size_bytes", "size"), ("latency_ms", "latency")):
        png = figures.with_name(f"{figures.name}-ort-{what}.png")
        plot_points(
            front_points,
            shown,
            png if png.is_absolute() else REPO / png,
            x=x,
            ylabel="mean cosine (validation)",
            title=f"{figures.name}: front and ONNX Runtime quantization ({what})",
        )
        lines.append(f"![cosine against {what}: front and ORT baselines]({png.as_posix()})")
    for line in lines:
        print(line)
    rows = []
    for b in ort.quantized:
        t = b.test
        rows.append(
            f"| {b.name} (ORT baseline) | teacher, ONNX | {b.val['accuracy']:.4f} | "
            f"{b.val.get('nn_agreement', float('nan')):.3f} | {t['test_accuracy']:.4f} "
            f"[{t['test_accuracy_low']:.4f}, {t['test_accuracy_high']:.4f}] | "
            f"{b.size_bytes:,} | {b.size_bytes / float_bytes:.1%} | "
            f"{timed[b.name].latency_ms:.1f} (side by side) |"
        )
    return rows, lines


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", type=Path, default=DEFAULT_STUDY)
    p.add_argument(
        "--figures",
        type=Path,
        default=DEFAULT_FIGURES,
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


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    # the fewest sentences the task takes, the two baselines (teacher, uniform int8) only:
    # packing the 90 MB model dominates each trial
    study_file = tiny_study(
        args.study_file,
        folder,
        n_trials=2,
        students=1,
        tables={
            "task": {"options": {"sentences": 30, "max_length": 16}},
            "latency": {"batch_size": 1},
        },
    )
    changes = {"study_file": study_file, "figures": folder, "quick_ort": True}
    return argparse.Namespace(**{**vars(args), **changes})


BENCHMARK = Benchmark(
    name="minilm",
    help="MiniLM: fidelity >= 0.99 at what size and latency",
    add_arguments=_add_arguments,
    run=lambda args: bench_minilm(
        args.study_file,
        figures=args.figures,
        calibration_rows=args.calibration_rows,
        quick_ort=args.quick_ort,
        results=args.results,
    ),
    smoke=_smoke,
    rows=lambda args: ORT_ROWS,
)
