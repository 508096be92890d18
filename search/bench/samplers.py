"""``python -m search.bench samplers``: random, TPE, NSGA-II and TPE seeded with sensitivity warm
starts, hypervolume after N trials, median and spread over seeds, per study.

Each (sampler, seed) is one fresh study on a context trained once per study file (teacher and
students shared by every run), run to the largest N (random search to at least 4x the smallest
N, so "TPE with warm starts after N against random after 4N" can be read off the same runs);
the hypervolume after n trials is read from the run's trials in order
(:func:`search.quality.hypervolume_curve`). The warm-started runs pay for their sensitivity
analysis: its seconds, divided by the run's seconds per trial, are a number of trials k, and
their hypervolume "after N trials" is the one after N - k trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from search.bench.common import REPO, Benchmark, smoke_source, tiny_study
from search.bench.runs import DEFAULT_STUDY, header, prepare, run_local, with_study
from search.quality import hypervolume_curve
from search.spec import StudySpec, load_spec
from search.study_attrs import SENSITIVITY_ATTR

SAMPLER_NAMES = {
    "random": "random",
    "tpe": "multi-objective TPE",
    "nsga2": "NSGA-II",
    "tpe-warm": "TPE + sensitivity warm starts",
}
DEFAULT_STUDIES = (DEFAULT_STUDY, Path("studies/mnist1d_cnn.toml"))
#: Where the figures go (relative to the repository; BENCHMARKS.md links them).
FIGURES = Path("studies/bench")


def _variant(spec: StudySpec, sampler: str, seed: int) -> StudySpec:
    warm = sampler == "tpe-warm"
    sensitivity = dataclasses.replace(spec.sensitivity, enabled=warm)
    return dataclasses.replace(
        with_study(spec, sampler="tpe" if warm else sampler, seed=seed), sensitivity=sensitivity
    )


def _sensitivity_s(study: object) -> float:
    tables = getattr(study, "user_attrs", {}).get(SENSITIVITY_ATTR, {})
    return float(sum(t.get("seconds", 0.0) for t in tables.values()))


def random_trials(args: argparse.Namespace) -> int:
    """How far random search runs: ``--random-trials``, else 4x the smallest N (at least the
    largest N)."""
    return args.random_trials or max(max(args.trials), 4 * min(args.trials))


def run_curves(args: argparse.Namespace, study_file: Path) -> tuple[pd.DataFrame, float]:
    """Per (sampler, seed, n): the hypervolume after n trials (cost counted); setup seconds.

    With ``--work DIR`` the teacher and students are cached in ``DIR`` and every finished
    (sampler, seed) run is kept there (:func:`_finished_run`): a later call with the same
    folder reads those and runs only the rest, so a comparison too long for one sitting (a
    model whose trials cost seconds) is completed over several.
    """
    spec = load_spec(study_file)
    longest = max(args.trials)
    rows = []
    setup_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        runs_dir = root / "runs" / study_file.stem
        runs_dir.mkdir(parents=True, exist_ok=True)
        ctx = None
        for name in args.samplers:
            n_run = random_trials(args) if name == "random" else longest
            for seed in range(args.seeds):
                record = runs_dir / f"{name}-{seed}.json"
                run = _finished_run(record, n_run)
                if run is None:
                    if ctx is None:
                        ctx, setup_s = prepare(spec, root / "ctx")
                    run = _run_one(ctx, _variant(spec, name, seed), runs_dir, name, seed, n_run)
                    record.write_text(json.dumps(run))
                curve, wall, cost_s = run["curve"], run["wall_s"], run["sensitivity_s"]
                per_trial = wall / max(1, run["trials"])
                k = math.ceil(cost_s / per_trial) if cost_s > 0 else 0
                for n in range(1, n_run + 1):
                    done = n - k
                    hv = float(curve[min(done, len(curve)) - 1]) if done >= 1 and curve else 0.0
                    rows.append({"sampler": name, "seed": seed, "n": n, "hv": hv, "cost_trials": k})
                print(
                    f"{study_file.name} {name} seed {seed}: hypervolume {rows[-1]['hv']:.4f} "
                    f"after {n_run} trials, {wall:.0f}s"
                    + (f", sensitivity {cost_s:.1f}s = {k} trials" if k else "")
                    + (" (kept from an earlier call)" if run.get("kept") else ""),
                    flush=True,
                )
    return pd.DataFrame(rows), setup_s


def _run_one(
    ctx: object, variant: StudySpec, folder: Path, name: str, seed: int, n_run: int
) -> dict[str, Any]:
    """One fresh study of ``n_run`` trials: its hypervolume curve, seconds, sensitivity cost."""
    db = folder / f"{name}-{seed}.db"
    db.unlink(missing_ok=True)  # an earlier call stopped mid-run: that run starts again
    trials, wall, study = run_local(ctx, variant, db, n_run)
    curve = hypervolume_curve(trials, variant.study.objectives)["hypervolume"]
    return {
        "n_run": n_run,
        "trials": len(trials),
        "wall_s": float(wall),
        "sensitivity_s": _sensitivity_s(study) if name == "tpe-warm" else 0.0,
        "curve": [float(v) for v in curve],
    }


def _finished_run(record: Path, n_run: int) -> dict[str, Any] | None:
    """The run kept in ``record`` by an earlier call, when it ran at least ``n_run`` trials."""
    if not record.exists():
        return None
    run: dict[str, Any] = json.loads(record.read_text())
    if int(run.get("n_run", 0)) < n_run:
        return None
    return {**run, "kept": True}


def _cell(values: pd.Series) -> str:
    if values.empty:
        return "-"
    return f"{values.median():.4f} [{values.min():.4f}, {values.max():.4f}]"


def section_for(args: argparse.Namespace, study_file: Path, df: pd.DataFrame) -> list[str]:
    """The table, the 4N check and the figure of one study."""
    lines = [
        f"### `{study_file.as_posix()}`",
        "",
        "| sampler | " + " | ".join(f"N = {n}" for n in args.trials) + " | sensitivity cost |",
        "| --- | " + " | ".join("---" for _ in args.trials) + " | --- |",
    ]
    for name in args.samplers:
        sub = df[df["sampler"] == name]
        cost = f"{int(sub['cost_trials'].max())} trials" if name == "tpe-warm" else "-"
        cells = [_cell(sub[sub["n"] == n]["hv"]) for n in args.trials]
        lines.append(f"| {SAMPLER_NAMES[name]} (`{name}`) | " + " | ".join(cells) + f" | {cost} |")
    lines.append("")
    if {"random", "tpe-warm"} <= set(args.samplers):
        for n in args.trials:
            warm = df[(df["sampler"] == "tpe-warm") & (df["n"] == n)]["hv"]
            rand = df[(df["sampler"] == "random") & (df["n"] == 4 * n)]["hv"]
            if warm.empty or rand.empty:
                continue
            ok = statistics.median(warm) >= statistics.median(rand)
            lines.append(
                f"- TPE + warm starts after {n} trials: median {statistics.median(warm):.4f}; "
                f"random after {4 * n}: median {statistics.median(rand):.4f} -> "
                f"**{'reached' if ok else 'not reached'}**."
            )
        lines.append("")
    png = plot_curves(df, args.samplers, args.figures / f"samplers-{study_file.stem}.png")
    lines += [f"![hypervolume against trials, {study_file.stem}]({png.as_posix()})", ""]
    return lines


def plot_curves(df: pd.DataFrame, samplers: list[str], path: Path) -> Path:
    """Median hypervolume against trials per sampler, with the seeds' min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name in samplers:
        g = df[df["sampler"] == name].groupby("n")["hv"]
        med, low, high = g.median(), g.min(), g.max()
        ax.plot(med.index, med.to_numpy(), label=SAMPLER_NAMES[name])
        ax.fill_between(med.index, low.to_numpy(), high.to_numpy(), alpha=0.15)
    ax.set_xlabel("trials (warm starts: sensitivity cost counted)")
    ax.set_ylabel("hypervolume (median, min-max band)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    target = path if path.is_absolute() else REPO / path
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return path


def bench_samplers(args: argparse.Namespace) -> str:
    """The section: for each study, hypervolume after N trials per sampler, over seeds."""
    files = " ".join(p.as_posix() for p in args.study_files)
    cmd = (
        f"python -m search.bench samplers {files} --trials "
        + " ".join(str(n) for n in args.trials)
        + f" --seeds {args.seeds}"
        + (f" --samplers {' '.join(args.samplers)}" if args.samplers != list(SAMPLER_NAMES) else "")
        + (f" --random-trials {args.random_trials}" if args.random_trials else "")
    )
    body: list[str] = []
    setups = []
    for study_file in args.study_files:
        df, setup_s = run_curves(args, study_file)
        setups.append(setup_s)
        body += section_for(args, study_file, df)
    lines = header(
        "Sampler comparison",
        cmd,
        args.study_files[0],
        sum(setups),
        f"Hypervolume after N trials (baselines included), median [min, max] over sampler "
        f"seeds 0-{args.seeds - 1}; each study's other settings as written. Random search runs "
        f"to {random_trials(args)} trials. The warm-started runs count their sensitivity "
        "analysis as k trials: their figure after N trials is the one after N - k.",
    )
    return "\n".join(lines + body)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_files", nargs="*", type=Path, default=list(DEFAULT_STUDIES))
    p.add_argument("--trials", type=int, nargs="+", default=[30, 60, 120])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--random-trials",
        type=int,
        default=None,
        help="trials of the random runs (default: 4x the smallest N, at least the largest N)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder keeping the trained models and every finished run: a later call with it "
        "runs only the runs still missing (default: a temporary folder)",
    )
    p.add_argument(
        "--samplers", nargs="+", choices=list(SAMPLER_NAMES), default=list(SAMPLER_NAMES)
    )
    p.set_defaults(figures=FIGURES)


def _smoke(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    studies = [
        tiny_study(smoke_source(f, DEFAULT_STUDY), folder / f"s{i}", n_trials=4)
        for i, f in enumerate(args.study_files[:1])
    ]
    return argparse.Namespace(
        **{
            **vars(args),
            "study_files": studies,
            "trials": [2, 4],
            "seeds": 1,
            "figures": folder / "figures",
        }
    )


BENCHMARK = Benchmark(
    name="samplers",
    help="random vs TPE vs NSGA-II vs TPE with sensitivity warm starts: hypervolume after N",
    add_arguments=_add_arguments,
    run=bench_samplers,
    smoke=_smoke,
    rows=lambda args: [f"{SAMPLER_NAMES[name]} (`{name}`)" for name in args.samplers],
)
