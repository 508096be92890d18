"""Benchmarks of the search itself: samplers, early stopping, Ray workers.

Registered as subcommands of ``python -m search.bench`` (see :mod:`search.bench`)::

    python -m search.bench samplers [STUDY.toml] [--trials 60] [--seeds 5]
    python -m search.bench early-stopping [STUDY.toml] [--trials 120] [--seeds 5]
    python -m search.bench ray [STUDY.toml] [--trials 40] [--workers 1 2]

Each one trains the study's teacher and students once into a temporary cache (timed apart),
runs fresh studies against it, prints what it measured and rewrites its own section of
``BENCHMARKS.md``. Quality is the hypervolume of the feasible front against the fixed
normalised reference point of :mod:`search.quality`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench import _load, machine, update_section
from search.quality import front_hypervolume, reference_text
from search.spec import StudySpec, load_spec

SAMPLER_NAMES = {"tpe": "multi-objective TPE", "nsga2": "NSGA-II", "random": "random"}


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``python -m search.bench``."""
    default = Path("studies/digits_cnn.toml")
    p = sub.add_parser("samplers", help="TPE vs NSGA-II vs random: hypervolume after N trials")
    p.add_argument("study_file", nargs="?", type=Path, default=default)
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    p = sub.add_parser(
        "early-stopping", help="fine-tuning time saved by early stopping, hypervolume it costs"
    )
    p.add_argument("study_file", nargs="?", type=Path, default=default)
    p.add_argument("--trials", type=int, default=120)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    p = sub.add_parser("ray", help="trials per minute with Ray on 1 and 2 workers")
    p.add_argument("study_file", nargs="?", type=Path, default=default)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")


def run(args: argparse.Namespace) -> bool:
    """Run the subcommand in ``args`` if it is one of this module's; False otherwise."""
    benches: dict[str, tuple[str, Callable[[argparse.Namespace], str]]] = {
        "samplers": ("samplers", bench_samplers),
        "early-stopping": ("early-stopping", bench_early_stopping),
        "ray": ("ray", bench_ray),
    }
    if args.bench not in benches:
        return False
    section, fn = benches[args.bench]
    body = fn(args)
    print(body)
    if not args.no_write:
        update_section(section, body)
    return True


def _with(spec: StudySpec, **study: Any) -> StudySpec:
    return dataclasses.replace(spec, study=dataclasses.replace(spec.study, **study))


def _prepare(spec: StudySpec, cache_root: Path) -> tuple[Any, float]:
    """A context whose teacher and students are trained once into ``cache_root``."""
    from search.objective import StudyContext

    t0 = time.perf_counter()
    ctx = StudyContext(spec, cache_root)
    for student in ctx.space.students:
        ctx.pool.get(student)
    return ctx, time.perf_counter() - t0


def _run_local(
    ctx: Any, spec: StudySpec, db: Path, n_trials: int
) -> tuple[pd.DataFrame, float, Any]:
    """Run a fresh study with ``spec``'s sampler and seed on ``ctx``: table, wall time, study."""
    from search.driver import open_study, run_study
    from search.results import trials_frame

    study = open_study(spec, f"sqlite:///{db}")
    old_spec = ctx.spec
    ctx.spec = spec  # same task, caches and trial seeds; the settings under test differ
    try:
        summary = run_study(ctx, study, n_trials=n_trials)
    finally:
        ctx.spec = old_spec
    return trials_frame(study), summary.wall_s, study


def _header(
    title: str, cmd: str, spec_file: Path, setup_s: float, extra: str, *, hv: bool = True
) -> list[str]:
    ref = reference_text(load_spec(spec_file).study.objectives)
    quality = (
        f"Hypervolume: feasible front, objectives divided by the teacher's, reference point "
        f"({ref}) (see `search/quality.py`). "
        if hv
        else ""
    )
    return [
        f"## {title}",
        "",
        f"Command: `{cmd}`",
        f"Study: `{spec_file.as_posix()}`. Machine: {machine()}. Load average after the "
        f"run: {_load()}. Date: {_dt.date.today().isoformat()}. Teacher and students "
        f"trained once ({setup_s:.0f}s), shared by every run.",
        quality + extra,
        "",
    ]


def bench_samplers(args: argparse.Namespace) -> str:
    """Median hypervolume after N trials for each sampler, over several seeds."""
    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx, setup_s = _prepare(spec, Path(tmp) / "ctx")
        for name in SAMPLER_NAMES:
            for seed in range(args.seeds):
                variant = _with(spec, sampler=name, seed=seed)
                db = Path(tmp) / f"{name}-{seed}.db"
                trials, wall, _ = _run_local(ctx, variant, db, args.trials)
                hv = front_hypervolume(trials, variant.study.objectives)
                rows.append(
                    {
                        "sampler": name,
                        "seed": seed,
                        "hv": hv,
                        "front": int(trials["front"].sum()),
                        "wall_s": wall,
                    }
                )
                print(f"{name} seed {seed}: hypervolume {hv:.4f}, {wall:.0f}s", flush=True)
    df = pd.DataFrame(rows)
    cmd = (
        f"python -m search.bench samplers {args.study_file.as_posix()} --trials {args.trials} "
        f"--seeds {args.seeds}"
    )
    lines = _header(
        "Sampler comparison",
        cmd,
        args.study_file,
        setup_s,
        f"{args.trials} trials per run (3 of them the baselines), sampler seeds "
        f"0-{args.seeds - 1}; the study's other settings as written.",
    )
    lines += [
        "| sampler | median hypervolume | min | max | median front points | per seed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in SAMPLER_NAMES.items():
        sub = df[df["sampler"] == name]
        lines.append(
            f"| {label} (`{name}`) | {sub['hv'].median():.4f} | {sub['hv'].min():.4f} | "
            f"{sub['hv'].max():.4f} | {sub['front'].median():.0f} | "
            + ", ".join(f"{v:.4f}" for v in sub["hv"])
            + " |"
        )
    return "\n".join(lines)


def bench_early_stopping(args: argparse.Namespace) -> str:
    """Fine-tuning time with early stopping off and on, and the hypervolume of each."""
    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx, setup_s = _prepare(spec, Path(tmp) / "ctx")
        for seed in range(args.seeds):
            for enabled in (False, True):
                variant = dataclasses.replace(
                    _with(spec, seed=seed),
                    early_stopping=dataclasses.replace(spec.early_stopping, enabled=enabled),
                )
                db = Path(tmp) / f"es{int(enabled)}-{seed}.db"
                trials, wall, study = _run_local(ctx, variant, db, args.trials)
                attrs = [t.user_attrs for t in study.get_trials(deepcopy=False)]
                # compress_s: compression and recovery fine-tuning (which dominates it);
                # candidate time adds the measurements and early stopping's rung 0
                finetune_s = sum(a.get("compress_s", 0.0) for a in attrs)
                candidate_s = finetune_s + sum(
                    a.get("evaluate_s", 0.0) + a.get("rung0_s", 0.0) for a in attrs
                )
                rows.append(
                    {
                        "seed": seed,
                        "enabled": enabled,
                        "finetune_s": finetune_s,
                        "candidate_s": candidate_s,
                        "wall_s": wall,
                        "hv": front_hypervolume(trials, spec.study.objectives),
                        "pruned": int((trials["state"] == "PRUNED").sum()),
                    }
                )
                print(
                    f"seed {seed} early stopping {'on ' if enabled else 'off'}: fine-tuning "
                    f"{finetune_s:.1f}s, candidates {candidate_s:.1f}s, wall {wall:.1f}s, "
                    f"hypervolume {rows[-1]['hv']:.4f}, "
                    f"pruned {rows[-1]['pruned']}",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    off, on = df[~df["enabled"]].set_index("seed"), df[df["enabled"]].set_index("seed")
    saved = 1 - on["finetune_s"] / off["finetune_s"]
    candidate_saved = 1 - on["candidate_s"] / off["candidate_s"]
    wall_saved = 1 - on["wall_s"] / off["wall_s"]
    hv_cost = 1 - on["hv"] / off["hv"]
    cmd = (
        f"python -m search.bench early-stopping {args.study_file.as_posix()} "
        f"--trials {args.trials} --seeds {args.seeds}"
    )
    s = spec.early_stopping
    lines = _header(
        "Early stopping",
        cmd,
        args.study_file,
        setup_s,
        f"{args.trials} trials per run, seeds 0-{args.seeds - 1}, each seed run with early "
        f"stopping off and on (rungs {list(s.rungs_for(spec.finetune.epochs))}, "
        f"min_dominating {s.min_dominating}, startup_trials {s.startup_trials}, margin "
        f"{s.margin} points). Fine-tuning time: compressing and fine-tuning candidates "
        "(`compress_s`); candidate time adds measuring them and early stopping's rung-0 "
        "evaluation (`evaluate_s`, `rung0_s`); wall time is the whole search.",
    )
    lines += [
        "| figure | median | per seed |",
        "| --- | --- | --- |",
        _row("fine-tuning time saved (target >= 30%)", saved, "{:.1%}"),
        _row("candidate time saved (fine-tuning, measuring, rung 0)", candidate_saved, "{:.1%}"),
        _row("search wall time saved", wall_saved, "{:.1%}"),
        _row("hypervolume cost (target <= 2%)", hv_cost, "{:.1%}"),
        _row("hypervolume, early stopping off", off["hv"], "{:.4f}"),
        _row("hypervolume, early stopping on", on["hv"], "{:.4f}"),
        _row("trials stopped early", on["pruned"], "{:.0f}"),
    ]
    return "\n".join(lines)


def _row(label: str, values: pd.Series, fmt: str) -> str:
    median = statistics.median(values.tolist())
    return f"| {label} | {fmt.format(median)} | " + ", ".join(fmt.format(v) for v in values) + " |"


def bench_ray(args: argparse.Namespace) -> str:
    """Trials per minute on a local Ray with 1, 2, ... workers (one CPU per trial)."""
    from search.driver import open_study
    from search.objective import StudyContext
    from search.ray_backend import run_ray

    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _, setup_s = _prepare(spec, Path(tmp) / "warm")
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}"
            shutil.copytree(Path(tmp) / "warm" / "cache", out / "cache")
            ctx = StudyContext(spec, out)
            study = open_study(spec, f"sqlite:///{out / 'study.db'}")
            summary = run_ray(ctx, study, n_trials=args.trials, workers=workers)
            done = sorted(t.datetime_complete for t in study.get_trials() if t.datetime_complete)
            # steady state: from the first `workers` finished trials (actors started) on
            span = (done[-1] - done[workers - 1]).total_seconds() if len(done) > workers else 0
            steady = 60 * (len(done) - workers) / span if span > 0 else float("nan")
            rows.append(
                {
                    "workers": workers,
                    "trials": summary.ran,
                    "wall_s": summary.wall_s,
                    "per_min": 60 * summary.ran / summary.wall_s,
                    "steady_per_min": steady,
                }
            )
            print(
                f"{workers} worker(s): {summary.ran} trials in {summary.wall_s:.1f}s, "
                f"{rows[-1]['per_min']:.1f} trials/min ({steady:.1f} once started)",
                flush=True,
            )
    df = pd.DataFrame(rows).set_index("workers")
    base = df.loc[args.workers[0]]
    cmd = (
        f"python -m search.bench ray {args.study_file.as_posix()} --trials {args.trials} "
        f"--workers {' '.join(str(w) for w in args.workers)}"
    )
    lines = _header(
        "Ray Tune workers",
        cmd,
        args.study_file,
        setup_s,
        f"A local Ray, one CPU per trial, {args.trials} trials per run; wall time from "
        "submitting the first trial (actor start-up included) to the last result; 'once "
        "started' counts from the first result of each worker on.",
        hv=False,
    )
    lines += [
        "| workers | trials/min | speed-up | trials/min once started | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for w, r in df.iterrows():
        lines.append(
            f"| {w} | {r['per_min']:.1f} | {r['per_min'] / base['per_min']:.2f}x | "
            f"{r['steady_per_min']:.1f} | {r['steady_per_min'] / base['steady_per_min']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - via search.bench
    from search.bench import main as bench_main

    return bench_main(argv)
