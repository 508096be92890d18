"""``python -m search.bench minilm``: the MiniLM study; fidelity >= 0.99 at what size, latency."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from search.bench.common import Benchmark, load_average, machine, tiny_study, today
from search.bench.ort_section import (
    MetricLabels,
    add_arguments,
    finished_study,
    ort_section,
    run_with,
)

DEFAULT_STUDY = Path("studies/minilm.toml")
DEFAULT_FIGURES = Path("studies/bench")
#: The labels of the ORT baseline rows (the smoke test checks them)
ORT_ROWS = ("ORT quantize_dynamic", "ORT quantize_static")
LABELS = MetricLabels("cosine", "nn_agreement", "nn agreement")


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

    settings = OrtSettings(calibration_rows=calibration_rows)
    if quick_ort:
        settings = replace(
            settings, methods=("minmax",), activations=("uint8",), ops=("weight-nodes",)
        )
    with finished_study(study_file, results) as run:
        ort_rows, ort_lines = ort_section(
            run.ctx, run.study, run.front, settings, figures / study_file.stem, LABELS
        )
    spec, trials, front = run.spec, run.trials, run.front
    ran, wall_s, setup_s = run.ran, run.wall_s, run.setup_s
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, DEFAULT_STUDY)


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
    run=run_with(bench_minilm),
    smoke=_smoke,
    rows=lambda args: ORT_ROWS,
)
