"""``python -m search.bench minilm``: the MiniLM study; fidelity >= 0.99 at what size, latency."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from search.bench.common import Benchmark, load_average, machine, tiny_study, today

DEFAULT_STUDY = Path("studies/minilm.toml")


def bench_minilm(study_file: Path) -> str:
    """The MiniLM study: the smallest front point keeping mean cosine >= 0.99."""
    from search.driver import open_study, run_study
    from search.final import final_figures
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec
    from search.stored import StoredStudy

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
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    ok = front[front["accuracy"] >= 0.99].sort_values("size_bytes")
    cmd = f"python -m search.bench minilm {study_file.as_posix()}"
    head = [
        "## MiniLM (all-MiniLM-L6-v2 sentence encoder)",
        "",
        f"Command: `{cmd}` (fresh results folder; {summary.ran} trials in "
        f"{summary.wall_s:.0f}s, plus {setup_s:.0f}s loading the model and its reference "
        "embeddings).",
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
    for line in body:
        print(line)
    return "\n".join(head + body)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", type=Path, default=DEFAULT_STUDY)


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
    return argparse.Namespace(**{**vars(args), "study_file": study_file})


BENCHMARK = Benchmark(
    name="minilm",
    help="MiniLM: fidelity >= 0.99 at what size and latency",
    add_arguments=_add_arguments,
    run=lambda args: bench_minilm(args.study_file),
    smoke=_smoke,
    rows=lambda args: (),
)
