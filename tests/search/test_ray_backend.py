"""The Ray Tune backend, for real: a local Ray with two workers runs a study end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from search.driver import open_study, run_study
from search.objective import StudyContext
from search.results import write_outputs
from search.spec import load_spec
from tests.conftest import run_cli
from tests.search._cluster import warm_cache
from tests.studyfile import write_study


@pytest.mark.slow
def test_ray_backend_runs_a_study_on_two_workers_and_writes_the_same_outputs(
    tmp_path: Path, warm_weights: Path
) -> None:
    # early stopping from the 5th trial on: Ray workers get the rung table with the config
    study_file = write_study(
        tmp_path,
        study={"name": "onray", "n_trials": 12, "sampler": "random"},
        early_stopping={"startup_trials": 4, "min_dominating": 1},
    )
    out = tmp_path / "ray"
    warm_cache(warm_weights, out)
    res = run_cli(
        "run",
        str(study_file),
        "--backend",
        "ray",
        "--workers",
        "2",
        "--out",
        str(out),
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Pareto front" in res.stdout
    assert "12 trials run" in res.stdout

    trials = pd.read_csv(out / "trials.csv")
    assert trials["trial"].tolist() == list(range(12))
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    pruned = trials[trials["state"] == "PRUNED"]
    # whether a candidate is dominated depends on measured latency, so on a busy machine none
    # may be: an empty (float) column is no failure
    reasons = pruned["prune_reason"].astype(str)
    assert reasons.str.startswith("dominated after 0 fine-tuning").all()
    assert (pruned["size_bytes"] > 0).all() and pruned["latency_ms"].notna().all()
    assert trials["baseline"].fillna("").tolist()[:3] == ["teacher", "uniform-int8", "uniform-int4"]
    assert trials["accuracy"].between(0, 1).all() and (trials["size_bytes"] > 0).all()
    # trials ran in two Ray worker processes (actors reused across trials), not the driver
    workers = set(trials["worker"])
    assert len(workers) == 2, workers
    front = pd.read_csv(out / "front.csv")
    assert len(front) >= 1 and front["feasible"].all()
    assert set(front["trial"]) <= set(trials["trial"])
    # the run ended as a local one does: the front re-timed side by side, the test split
    assert front["final_latency_ms"].gt(0).all() and front["test_accuracy"].notna().all()
    assert (out / "front.png").stat().st_size > 10_000

    # a local run of the same study writes the same columns
    local = tmp_path / "local"
    warm_cache(warm_weights, local)
    spec = load_spec(study_file)
    study = open_study(spec, f"sqlite:///{local / 'study.db'}")
    run_study(StudyContext(spec, local), study, n_trials=3)
    write_outputs(study, local)
    assert list(trials.columns) == list(pd.read_csv(local / "trials.csv").columns)
