"""``python -m search.bench early-stopping``: fine-tuning time saved by early stopping, and the
hypervolume it costs."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import pandas as pd

from search.bench.common import Benchmark
from search.bench.runs import (
    add_study_arguments,
    header,
    median_row,
    prepare,
    run_local,
    smoke_args,
    with_study,
)
from search.quality import front_hypervolume
from search.spec import load_spec

ROWS = (
    "fine-tuning time saved (target >= 30%)",
    "candidate time saved (fine-tuning, measuring, rung 0)",
    "search wall time saved",
    "hypervolume cost (target <= 2%)",
    "hypervolume, early stopping off",
    "hypervolume, early stopping on",
    "trials stopped early",
)


def bench_early_stopping(args: argparse.Namespace) -> str:
    """Fine-tuning time with early stopping off and on, and the hypervolume of each."""
    spec = load_spec(args.study_file)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx, setup_s = prepare(spec, Path(tmp) / "ctx")
        for seed in range(args.seeds):
            for enabled in (False, True):
                variant = dataclasses.replace(
                    with_study(spec, seed=seed),
                    early_stopping=dataclasses.replace(spec.early_stopping, enabled=enabled),
                )
                db = Path(tmp) / f"es{int(enabled)}-{seed}.db"
                trials, wall, study = run_local(ctx, variant, db, args.trials)
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
    lines = header(
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
        median_row(ROWS[0], saved, "{:.1%}"),
        median_row(ROWS[1], candidate_saved, "{:.1%}"),
        median_row(ROWS[2], wall_saved, "{:.1%}"),
        median_row(ROWS[3], hv_cost, "{:.1%}"),
        median_row(ROWS[4], off["hv"], "{:.4f}"),
        median_row(ROWS[5], on["hv"], "{:.4f}"),
        median_row(ROWS[6], on["pruned"], "{:.0f}"),
    ]
    return "\n".join(lines)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_arguments(p, trials=120)
    p.add_argument("--seeds", type=int, default=5)


BENCHMARK = Benchmark(
    name="early-stopping",
    help="fine-tuning time saved by early stopping, hypervolume it costs",
    add_arguments=_add_arguments,
    run=bench_early_stopping,
    # early stopping starts after two trials, so that the smoke test can stop one
    smoke=lambda args, folder: smoke_args(
        args, folder, {"early_stopping": {"startup_trials": 2}}, trials=8, seeds=1
    ),
    rows=lambda args: ROWS,
)
