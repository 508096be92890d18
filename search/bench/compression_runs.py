"""What the compression benchmark does with each study: run it from scratch as ``frontier run``
does (ending with the final side-by-side figures), then rebuild its front and baselines from
their stored configurations and score them on the test split (which reports, never chooses)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from evaluators import AccuracyEvaluator


@dataclass(frozen=True)
class StudyRun:
    """A study run to its end: its context, trials and front (each with its configuration)."""

    study_file: Path
    seed: int
    ctx: Any
    trials: pd.DataFrame
    front: pd.DataFrame
    wall_s: float


def run_fresh(study_file: Path, out: Path, seed: int) -> StudyRun:
    """Run ``study_file`` with study seed ``seed`` in ``out``, from scratch, to its end."""
    from search.driver import open_study, run_study
    from search.final import final_figures
    from search.objective import StudyContext
    from search.results import write_outputs
    from search.spec import load_spec
    from search.stored import StoredStudy

    spec = load_spec(study_file)
    spec = replace(spec, study=replace(spec.study, seed=seed))
    ctx = StudyContext(spec, out)
    url = f"sqlite:///{out / 'study.db'}"
    study = open_study(spec, url)
    summary = run_study(ctx, study, n_trials=spec.study.n_trials)
    final_figures(StoredStudy(study, spec, out, url, _context=ctx))
    trials, front = write_outputs(study, out)
    configs = {t.number: t.user_attrs.get("config") for t in study.get_trials(deepcopy=False)}
    trials = trials.assign(config=trials["trial"].map(configs))
    front = front.assign(config=front["trial"].map(configs))
    return StudyRun(study_file, seed, ctx, trials, front, summary.wall_s)


def rebuild(ctx: Any, row: pd.Series) -> Any:
    """The candidate of ``row``, built again from its configuration (same seed, same weights)."""
    from search.objective import rebuild_candidate
    from spaces import CompressionConfig

    config = CompressionConfig.from_json(row["config"])
    return rebuild_candidate(ctx, config, trial=int(row["trial"]))


def front_with_test_accuracy(run: StudyRun) -> pd.DataFrame:
    """The front plus the baselines, each rebuilt and scored on the test split."""
    rows = pd.concat([run.front, run.trials[run.trials["baseline"].astype(str) != ""]])
    rows = rows.drop_duplicates("trial")
    val = AccuracyEvaluator(run.ctx.task, split="val")
    test = AccuracyEvaluator(run.ctx.task, split="test", column="test_accuracy")
    out = []
    for _, row in rows.iterrows():
        cand = rebuild(run.ctx, row)
        again = val.evaluate(cand)["accuracy"]
        out.append(
            {
                **row.to_dict(),
                "test_accuracy": test.evaluate(cand)["test_accuracy"],
                "rebuilt_matches": abs(again - float(row["accuracy"])) < 1e-9,
                # the settings the model has (those of layers a student lacks are dropped)
                "config": cand.config.to_json(),
                "candidate": cand,
            }
        )
    return pd.DataFrame(out)


def within(df: pd.DataFrame, teacher: pd.Series, points: float) -> pd.DataFrame:
    """Front points within ``points`` of the teacher's validation accuracy (validation
    chooses; the test split only reports)."""
    drop = 100 * (teacher["accuracy"] - df["accuracy"])
    return df[(drop <= points + 1e-9) & df["front"].astype(bool)]


def teacher_row(df: pd.DataFrame) -> pd.Series:
    """The teacher's row of ``df``."""
    return df[df["baseline"] == "teacher"].iloc[0]
