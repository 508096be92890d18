"""``python -m search.bench report``: ``report`` and ``export`` timings on a fresh study run."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from search.bench.common import Benchmark, machine, smoke_source, tiny_study, today

DEFAULT_STUDY = Path("studies/digits_cnn.toml")
ROWS = (  # the start of each row's label
    "study run (",
    "report, first (",
    "report again (",
    "report.html size (",
    "export of the knee point (",
    "knee point: size (B)",
)


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
            f"Machine: {machine()}. Date: {today()}. One run.",
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", type=Path, default=DEFAULT_STUDY)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    study_file = tiny_study(smoke_source(args.study_file, DEFAULT_STUDY), folder)
    return argparse.Namespace(**{**vars(args), "study_file": study_file})


BENCHMARK = Benchmark(
    name="report",
    help="report and export timings on a fresh run of a study",
    add_arguments=_add_arguments,
    run=lambda args: bench_report(args.study_file),
    smoke=_smoke,
    rows=lambda args: ROWS,
)
