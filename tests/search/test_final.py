"""The final figures of a study (:mod:`search.final`): the front and the baselines re-timed
side by side at the end of a run, measured on the test split, and what reads them (front.csv,
the printed front, the report, the knee, ``select``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest

from search.final import FINAL_RUN_ATTR, final_figures, final_trials, missing_final
from search.report import knee_trial
from search.report.tables import latency_text
from search.results import FINAL_ATTR, TEST_FIGURES_ATTR, quoted_latency
from search.stored import open_stored
from tests.conftest import run_cli
from tests.studyfile import write_study


def _mlp_study(folder: Path) -> Path:
    """A few digits-mlp trials (teacher only: nothing to distil), 30 timed passes a round."""
    return write_study(
        folder,
        study={"name": "final", "n_trials": 5, "sampler": "random"},
        task={"name": "digits-mlp"},
        space={"students": ["teacher"]},
        finetune={"epochs": 0},
        latency={"repeats": 30, "warmup": 2},
        budget={"max_accuracy_drop": None},
    )


@pytest.mark.slow
def test_a_run_ends_with_final_figures_and_every_table_quotes_them(tmp_path: Path) -> None:
    study_file = _mlp_study(tmp_path)
    out = tmp_path / "out"
    res = run_cli("run", str(study_file), "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "final latency of" in res.stdout and "timed side by side now" in res.stdout

    stored = open_stored(str(out))  # the results folder names the study
    study = stored.study
    wanted = final_trials(study)
    figures = study.user_attrs[FINAL_ATTR]
    assert {str(n) for n in wanted} == set(figures) and not missing_final(study)
    how = study.user_attrs[FINAL_RUN_ATTR]
    assert how["rounds"] == 5 and how["repeats_per_round"] == 30 and how["quiet"] is True
    assert how["trials"] == wanted
    # the test split is measured for these trials only, not for every trial
    assert set(study.user_attrs[TEST_FIGURES_ATTR]) == {str(n) for n in wanted}
    assert not any("test_accuracy" in t.user_attrs for t in study.trials)

    front = pd.read_csv(out / "front.csv")
    trials = pd.read_csv(out / "trials.csv")
    assert front["final_latency_ms"].gt(0).all() and front["final_latency_spread"].ge(0).all()
    assert front["test_accuracy"].between(0, 1).all()
    assert (front["latency_ms"] > 0).all()  # the search-time figure keeps its own column
    baselines = trials[trials["baseline"].notna() & (trials["state"] == "COMPLETE")]
    assert baselines["final_latency_ms"].gt(0).all()
    others = trials[~trials["trial"].isin(wanted)]
    assert others["final_latency_ms"].isna().all()
    for _, row in front.iterrows():
        assert figures[str(int(row["trial"]))]["final_latency_ms"] == row["final_latency_ms"]

    # the printed front: latency and the ratio against the teacher from the final figures
    teacher_ms = float(trials.loc[trials["baseline"] == "teacher", "final_latency_ms"].iloc[0])
    first = front.iloc[0]
    line = next(
        ln for ln in res.stdout.splitlines() if re.match(rf"\s*{int(first['trial'])}\s", ln)
    )
    assert f"{teacher_ms / first['final_latency_ms']:.2f}x" in line
    assert f"{first['final_latency_ms']:.3f}" in line

    # the report reads them without timing again
    again = final_figures(stored)
    assert not again.timed
    assert study.user_attrs[FINAL_RUN_ATTR]["utc"] == how["utc"]

    res = run_cli("report", str(out), "--dest", str(tmp_path / "report"))
    assert res.returncode == 0, res.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"{first['final_latency_ms']:.3f} (spread" in md


def _frame() -> pd.DataFrame:
    """A front where the search-time and the final latencies disagree."""
    return pd.DataFrame(
        {
            "trial": [1, 2, 3],
            "accuracy": [0.99, 0.98, 0.90],
            "size_bytes": [100_000.0, 10_000.0, 1_000.0],
            # while searching, trial 2 was timed on a lucky moment: the fastest point
            "latency_ms": [2.0, 0.1, 1.0],
            # side by side, it is as slow as the largest point
            "final_latency_ms": [2.0, 2.0, 0.2],
        }
    )


def test_the_knee_follows_the_final_latency() -> None:
    front = _frame()
    objectives = ["accuracy", "size_bytes", "latency_ms"]
    assert knee_trial(front, objectives) == 3
    assert knee_trial(front.drop(columns="final_latency_ms"), objectives) == 2
    assert quoted_latency(front).tolist() == [2.0, 2.0, 0.2]
    # a point without a final figure is quoted with its search-time one
    partial = front.assign(final_latency_ms=[2.0, float("nan"), 0.2])
    assert quoted_latency(partial).tolist() == [2.0, 0.1, 0.2]


def test_final_trials_are_the_front_and_the_baselines(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for acc, size, base in [(0.99, 100.0, "teacher"), (0.98, 10.0, ""), (0.90, 50.0, "")]:
        attrs = {"accuracy": acc, "size_bytes": size, "latency_ms": 1.0, "baseline": base}
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, size, 1.0], user_attrs=attrs, constraints={"size": -1.0}
            )
        )
    assert final_trials(study) == [0, 1]  # trial 2 is dominated and no baseline
    assert missing_final(study) == [0, 1]
    study.set_user_attr(FINAL_ATTR, {"0": {"final_latency_ms": 1.5}})
    assert missing_final(study) == [1]


def test_latency_text_shows_the_final_figure_or_marks_the_search_time_one() -> None:
    row = _frame().iloc[2]
    assert latency_text(row.copy()) == "0.200"
    spread = pd.concat([row, pd.Series({"final_latency_spread": 0.06})])
    assert latency_text(spread) == "0.200 (spread 6%)"
    assert latency_text(row.drop("final_latency_ms")) == "1.000*"


def test_a_gptq_front_point_is_timed_as_built_with_nearest_rounding(
    tmp_path: Path, warm_weights: Path
) -> None:
    # the timed form depends on the operators, not the weight values: no GPTQ, no fine-tuning
    from search.final import timing_candidate
    from search.objective import StudyContext
    from search.spec import load_spec
    from tests.search._cluster import warm_cache

    study_file = write_study(tmp_path, study={"name": "tg", "n_trials": 1}, finetune={"epochs": 1})
    spec = load_spec(study_file)
    warm_cache(warm_weights, tmp_path / "out")
    ctx = StudyContext(spec, tmp_path / "out")
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    config = ctx.space.baselines()["uniform-int4"]
    gptq = dataclasses.replace(config, rounding="gptq")
    study.enqueue_trial({}, user_attrs={"config": gptq.to_json()})
    trial = study.ask()
    built = timing_candidate(ctx, study.trials[trial.number])
    assert built.config.rounding == "nearest" and built.rounded == {}
    assert built.config.bits == gptq.bits
    assert [type(m) for m in built.model.modules()] == [
        type(m) for m in ctx.pool.get("teacher").modules()
    ]
