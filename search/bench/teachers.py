"""``python -m search.bench teachers``: built-in teachers and their distilled students.

For each study file and seed, in a fresh cache: the task's teacher is trained as a study
trains it (the study's thread count), timed, and scored on the validation and test splits;
then each of the study's students is distilled with the study's ``[distillation]`` settings,
timed, and scored on the validation split.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.bench.common import (
    SMOKE_STUDY,
    Benchmark,
    load_average,
    machine,
    tiny_study,
    today,
)
from search.spec import load_spec

DEFAULT_STUDY = Path("studies/mnist1d_cnn.toml")


@dataclass(frozen=True)
class _Shown:
    model: nn.Module
    artifact: bytes = b""


def _accuracy(task: Any, model: nn.Module, split: str) -> float:
    from evaluators import AccuracyEvaluator

    return float(AccuracyEvaluator(task, split=split).evaluate(_Shown(model))["accuracy"])


def measure(study_file: Path, seed: int) -> dict[str, Any]:
    """One seed of one study: teacher figures, training time, and each student's."""
    from evaluators import WeightCache
    from search.objective import build_task
    from spaces import TEACHER, StudentPool

    spec = load_spec(study_file)
    spec = dataclasses.replace(spec, study=dataclasses.replace(spec.study, seed=seed))
    torch.set_num_threads(spec.latency.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cache = WeightCache(Path(tmp))
        t0 = time.perf_counter()
        task = build_task(spec, cache)
        row: dict[str, Any] = {
            "task": task.name,
            "seed": seed,
            "threads": spec.latency.threads,
            "train_s": time.perf_counter() - t0,
            "val": _accuracy(task, task.model, "val"),
            "test": _accuracy(task, task.model, "test"),
            "students": {},
        }
        pool = StudentPool(task, cache, spec.distillation, seed=seed)
        names = [n for n in (spec.space.students or pool.names) if n != TEACHER]
        t1 = time.perf_counter()
        for name in names:
            row["students"][name] = _accuracy(task, pool.get(name), "val")
        row["distill_s"] = time.perf_counter() - t1
    return row


def bench_teachers(study_files: Sequence[Path], seeds: int) -> str:
    """Measure every study file over ``seeds`` seeds; the BENCHMARKS.md section."""
    rows = []
    for study_file in study_files:
        for seed in range(seeds):
            row = measure(study_file, seed)
            students = ", ".join(f"{k} {100 * v:.1f}%" for k, v in row["students"].items())
            print(
                f"{row['task']} seed {seed}: teacher val {100 * row['val']:.1f}%, test "
                f"{100 * row['test']:.1f}%, trained in {row['train_s']:.1f}s; students "
                f"{students} ({row['distill_s']:.1f}s)",
                flush=True,
            )
            rows.append({**row, "file": study_file})
    files = " ".join(str(f) for f in study_files)
    lines = [
        "## Teachers and their distilled students",
        "",
        f"Command: `python -m search.bench teachers {files} --seeds {seeds}`",
        f"Machine: {machine()}. Load average after the run: {load_average()}. Date: "
        f"{today()}. Each seed in a fresh cache, trained with the "
        "study's thread count; students distilled with the study's `[distillation]` settings "
        "and scored on the validation split.",
        "",
        "| task | seed | teacher val | teacher test | teacher training (s) | students (val) | "
        "distillation of all students (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        students = ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["students"].items())
        lines.append(
            f"| {r['task']} | {r['seed']} | {100 * r['val']:.1f}% | {100 * r['test']:.1f}% | "
            f"{r['train_s']:.1f} | {students} | {r['distill_s']:.1f} |"
        )
    for task in dict.fromkeys(r["task"] for r in rows):
        sub = [r for r in rows if r["task"] == task]
        lines.append(
            f"| {task} | mean | {100 * statistics.mean(r['val'] for r in sub):.1f}% | "
            f"{100 * statistics.mean(r['test'] for r in sub):.1f}% | "
            f"{statistics.median(r['train_s'] for r in sub):.1f} (median) | | |"
        )
    return "\n".join(lines)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_files", nargs="*", type=Path, default=[DEFAULT_STUDY])
    p.add_argument("--seeds", type=int, default=3)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    study_file = tiny_study(
        SMOKE_STUDY if args.study_files == [DEFAULT_STUDY] else args.study_files[0], folder
    )
    return argparse.Namespace(**{**vars(args), "study_files": [study_file], "seeds": 1})


def _rows(args: argparse.Namespace) -> list[str]:
    return [load_spec(f).task for f in args.study_files]


BENCHMARK = Benchmark(
    name="teachers",
    help="built-in teachers over seeds, and their distilled students",
    add_arguments=_add_arguments,
    run=lambda args: bench_teachers(args.study_files, args.seeds),
    smoke=_smoke,
    rows=_rows,
)
