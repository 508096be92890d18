"""``python -m search.bench efficientnet``: EfficientNet-Lite0's study against the issue's
targets (confident agreement >= 97% at <= 20% of the bytes; >= 2.5x faster than the float
model in ONNX Runtime at batch 1), with ONNX Runtime's own quantizations beside the front."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pandas as pd

from search.bench.common import Benchmark, load_average, machine, tiny_study, today
from search.bench.ort_section import (
    MetricLabels,
    add_arguments,
    finished_study,
    ort_section,
    run_with,
)

DEFAULT_STUDY = Path("studies/efficientnet_lite0.toml")
DEFAULT_FIGURES = Path("studies/bench")
ORT_ROWS = ("ORT quantize_dynamic", "ORT quantize_static")
LABELS = MetricLabels("confident agreement", "agreement", "agreement")
#: The issue's targets: this metric or more, at most this share of the bytes / this speed-up
MIN_METRIC = 0.97
MAX_SIZE_SHARE = 0.20
MIN_SPEEDUP = 2.5


def bench_efficientnet(
    study_file: Path,
    *,
    figures: Path = DEFAULT_FIGURES,
    calibration_rows: int = 64,
    quick_ort: bool = False,
    results: Path | None = None,
) -> str:
    """Front points keeping confident agreement >= 97% (validation chooses), their test
    figures, bytes and final side-by-side latency, the two targets, and the ORT baselines."""
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
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    float_ms, float_bytes = float(teacher["final_latency_ms"]), float(teacher["size_bytes"])
    ok = front[front["accuracy"] >= MIN_METRIC].sort_values("size_bytes")
    cmd = f"python -m search.bench efficientnet {study_file.as_posix()}"
    if results is None:
        how = (
            f"(fresh results folder; {run.ran} trials in {run.wall_s:.0f}s, plus "
            f"{run.setup_s:.0f}s for the reference logits and the students)."
        )
    else:
        cmd = f"frontier run {study_file.as_posix()} --out DIR`, then `{cmd} --results DIR"
        how = (
            f"({run.ran} trials, {run.wall_s / 60:.0f} minutes from the first trial's start to "
            "the last one's end; the final timing and test figures are the run's own)."
        )
    lat = spec.latency
    head = [
        "## EfficientNet-Lite0 (ImageNet-pretrained, photograph crops)",
        "",
        f"Command: `{cmd}` {how}",
        f"Machine: {machine()}. Date: {today()}. Load average {load_average()}.",
        "",
        f"Float model: {int(float_bytes):,} bytes, latency {float_ms:.2f} ms (final figure, "
        f"{lat.runtime}, timed side by side with the front; batch {lat.batch_size}, "
        f"{lat.threads} thread(s)).",
        "",
        f"Front points keeping confident agreement >= {MIN_METRIC:.0%} (validation chooses), "
        "smallest first:",
        "",
        "| trial | student | confident agreement (val) | agreement (val) | confident agreement "
        "(test, 95% CI) | size (bytes) | of fp32 size | latency ms (final / search-time) | "
        "speed-up (final) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    body = [
        f"| {r.trial} | {r.student} | {r.accuracy:.4f} | {r.agreement:.4f} | "
        f"{r.test_accuracy:.4f} [{r.test_accuracy_low:.4f}, {r.test_accuracy_high:.4f}] | "
        f"{int(r.size_bytes):,} | {r.size_bytes / float_bytes:.1%} | "
        f"{r.final_latency_ms:.2f} / {r.latency_ms:.2f} | {float_ms / r.final_latency_ms:.2f}x |"
        for r in ok.itertuples()
    ] or ["| none | | | | | | | | |"]
    body += [
        *ort_rows,
        "",
        "ORT rows: ONNX Runtime's quantization of the teacher (section below); their size is "
        "the `.onnx` file's, their share is of the float ONNX file, their latency the "
        "side-by-side figure of the section below.",
        "",
        *_targets(ok, float_bytes, float_ms),
    ]
    for line in body:
        print(line)
    return "\n".join(head + body + ["", *ort_lines])


def _targets(ok: pd.DataFrame, float_bytes: float, float_ms: float) -> list[str]:
    """One line per target: the front point that meets it, or the closest one."""
    lines = ["Targets (validation chooses the point; its test figure beside it):", ""]
    if ok.empty:
        return [*lines, f"- no front point keeps confident agreement >= {MIN_METRIC:.0%}."]
    small = ok.iloc[0]
    share = small["size_bytes"] / float_bytes
    met = "met" if share <= MAX_SIZE_SHARE else "**not met**"
    lines.append(
        f"- >= {MIN_METRIC:.0%} at <= {MAX_SIZE_SHARE:.0%} of the bytes: {met}; smallest: "
        f"trial {small['trial']}, {small['accuracy']:.4f} (test {small['test_accuracy']:.4f}) "
        f"at {share:.1%}."
    )
    fast = ok.loc[ok["final_latency_ms"].astype(float).idxmin()]
    speedup = float_ms / float(fast["final_latency_ms"])
    met = "met" if speedup >= MIN_SPEEDUP else "**not met**"
    lines.append(
        f"- >= {MIN_METRIC:.0%} at >= {MIN_SPEEDUP}x the float model's speed: {met}; fastest: "
        f"trial {fast['trial']}, {fast['accuracy']:.4f} (test {fast['test_accuracy']:.4f}), "
        f"{fast['final_latency_ms']:.2f} ms against {float_ms:.2f} ({speedup:.2f}x)."
    )
    return lines


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, DEFAULT_STUDY)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    # the smallest images and splits the task takes, the baselines only
    study_file = tiny_study(
        args.study_file,
        folder,
        n_trials=2,
        students=1,
        tables={
            "task": {
                "options": {
                    "resolution": 64,
                    "train_crops": 32,
                    "val_crops": 16,
                    "test_crops": 16,
                }
            },
            "sensitivity": {"rows": 16},
        },
    )
    changes = {
        "study_file": study_file,
        "figures": folder,
        "quick_ort": True,
        "calibration_rows": 8,
    }
    return argparse.Namespace(**{**vars(args), **changes})


BENCHMARK = Benchmark(
    name="efficientnet",
    help="EfficientNet-Lite0: confident agreement >= 97% at what size and speed-up",
    add_arguments=_add_arguments,
    run=run_with(bench_efficientnet),
    smoke=_smoke,
    rows=lambda args: ORT_ROWS,
)
