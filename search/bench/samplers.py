"""``python -m search.bench samplers``: TPE, NSGA-II and random, hypervolume after N trials."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from search.bench.common import Benchmark
from search.bench.runs import (
    add_study_arguments,
    header,
    prepare,
    run_local,
    smoke_args,
    with_study,
)
from search.quality import front_hypervolume
from search.spec import load_spec

SAMPLER_NAMES = {"tpe": "multi-objective TPE", "nsga2": "NSGA-II", "random": "random"}


def bench_samplers(args: argparse.Namespace) -> str:
    """Median hypervolume after N trials for each sampler, over several seeds."""
    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx, setup_s = prepare(spec, Path(tmp) / "ctx")
        for name in SAMPLER_NAMES:
            for seed in range(args.seeds):
                variant = with_study(spec, sampler=name, seed=seed)
                db = Path(tmp) / f"{name}-{seed}.db"
                trials, wall, _ = run_local(ctx, variant, db, args.trials)
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
    lines = header(
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_arguments(p, trials=60)
    p.add_argument("--seeds", type=int, default=5)


BENCHMARK = Benchmark(
    name="samplers",
    help="TPE vs NSGA-II vs random: hypervolume after N trials",
    add_arguments=_add_arguments,
    run=bench_samplers,
    smoke=lambda args, folder: smoke_args(args, folder, trials=4, seeds=1),
    rows=lambda args: [f"{label} (`{name}`)" for name, label in SAMPLER_NAMES.items()],
)
