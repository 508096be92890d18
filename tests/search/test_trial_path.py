"""The one trial path: the outcome record, tell, and the same records from both backends."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.driver import open_study, run_study
from search.objective import StudyContext
from search.outcome import TrialOutcome
from search.spec import load_spec, parse_spec
from search.trial import TrialJob, tell
from spaces import CompressionConfig
from tests.conftest import run_cli
from tests.search._cluster import warm_cache
from tests.studyfile import write_study

#: Figures that time something: they differ between any two runs.
TIMED = ("latency_", "_s", "quiet_")


def _spec():  # type: ignore[no-untyped-def]
    return parse_spec({"study": {"name": "s"}, "task": {"name": "digits-mlp"}})


def test_the_outcome_record_round_trips_through_json() -> None:
    outcome = TrialOutcome(
        {"accuracy": 0.5, "size_bytes": 10.0},
        {"size_bytes": -1.0},
        objective_values={"accuracy": 0.0},
        skipped="why",
        state="pruned",
        reason="dominated",
        worker="h:1",
    )
    assert TrialOutcome.from_json(outcome.to_json()) == outcome
    with pytest.raises(ValueError, match="'state' must be one of"):
        TrialOutcome({}, state="done")
    job = TrialJob(3, CompressionConfig(bits={"fc1": 4}), seed=7, rungs=None)
    assert TrialJob.from_json(job.to_json()) == job


def test_tell_records_every_state_and_turns_nan_objectives_into_a_failure(
    tmp_path: Path,
) -> None:
    study = open_study(_spec(), f"sqlite:///{tmp_path / 'study.db'}")
    good = {"accuracy": 0.9, "size_bytes": 100.0, "latency_ms": 1.5}
    tell(study, study.ask(), TrialOutcome(dict(good), {"size_bytes": -5.0}))
    tell(study, study.ask(), TrialOutcome(dict(good), state="pruned", reason="dominated at 0"))
    tell(study, study.ask(), TrialOutcome.failed("RuntimeError: boom"))
    tell(study, study.ask(), TrialOutcome({**good, "accuracy": math.nan}))
    done = study.get_trials()
    assert [t.state for t in done] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    assert done[0].values == [0.9, 100.0, 1.5]
    assert done[0].constraints == {"size_bytes": -5.0}
    assert done[1].user_attrs["prune_reason"] == "dominated at 0"
    assert done[1].user_attrs["size_bytes"] == 100.0
    assert done[2].user_attrs["fail_reason"] == "RuntimeError: boom"
    assert done[3].user_attrs["fail_reason"].startswith("FloatingPointError: non-finite")


def _records(url: str, name: str) -> list[dict[str, object]]:
    study = optuna.load_study(study_name=name, storage=url)
    out = []
    for t in study.get_trials():
        attrs = {
            k: v
            for k, v in t.user_attrs.items()
            if k != "worker" and not any(part in k for part in TIMED)
        }
        out.append({"number": t.number, "state": t.state, "params": t.params, "attrs": attrs})
    return out


@pytest.mark.slow
def test_local_and_ray_backends_store_the_same_records(tmp_path: Path, warm_weights: Path) -> None:
    # no early stopping: its rung table depends on which trials finished first, which differs
    # between two Ray workers and one local process; everything else must be the same
    study_file = write_study(
        tmp_path,
        study={"name": "same", "n_trials": 6, "sampler": "random"},
        early_stopping={"enabled": False},
    )
    spec = load_spec(study_file)

    local = tmp_path / "local"
    warm_cache(warm_weights, local)
    local_url = f"sqlite:///{local / 'study.db'}"
    run_study(StudyContext(spec, local), open_study(spec, local_url, results_dir=local), n_trials=6)

    ray = tmp_path / "ray"
    warm_cache(warm_weights, ray)
    res = run_cli(
        "run", str(study_file), "--backend", "ray", "--workers", "2", "--out", str(ray),
        "--no-progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]

    mine, theirs = _records(local_url, "same"), _records(f"sqlite:///{ray / 'study.db'}", "same")
    assert len(mine) == len(theirs) == 6
    assert {r["state"] for r in mine} == {TrialState.COMPLETE}
    for a, b in zip(mine, theirs, strict=True):
        assert a["params"] == b["params"]
        assert a["state"] == b["state"]
        assert a["attrs"].keys() == b["attrs"].keys(), a["number"]
        for key, value in a["attrs"].items():
            other = b["attrs"][key]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-6, abs=1e-9), (a["number"], key)
            else:
                assert other == value, (a["number"], key)
