"""Several ``frontier run`` workers on one study in the real PostgreSQL.

Dead workers, heartbeats and claiming on PostgreSQL (as on every storage) are the contract
suite in ``tests/search/storage/test_contract.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from evaluators import AccuracyEvaluator, SizeEvaluator
from search.objective import StudyContext
from search.spec import load_spec
from spaces import CompressionConfig, compress
from tests.search._cluster import load, start_cli, warm_cache
from tests.studyfile import write_study


def _log(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


@pytest.mark.slow
def test_four_workers_x_10_trials_end_with_exactly_40_as_computed(
    tmp_path: Path, postgres_url: str, warm_weights: Path
) -> None:
    study_file = write_study(
        tmp_path, study={"name": "pg4x10", "n_trials": 40}, finetune={"epochs": 0}
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    procs = [
        start_cli(
            "run",
            str(study_file),
            "--storage",
            postgres_url,
            "--out",
            str(out),
            "--no-progress",
            log=log,
        )
        for log in logs
    ]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=300) == 0, _log(log)

    study = load(postgres_url, "pg4x10")
    trials = study.get_trials()
    assert len(trials) == 40
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(40))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work was shared
    assert sum(t.user_attrs.get("baseline") == "teacher" for t in trials) == 1

    # values stored as computed: recompute every candidate (no fine-tuning: deterministic)
    spec = load_spec(study_file)
    ctx = StudyContext(spec, out)
    size, accuracy = SizeEvaluator(), AccuracyEvaluator(ctx.task, split="val")
    for t in trials:
        assert t.values == [t.user_attrs[k] for k in ("accuracy", "size_bytes", "latency_ms")]
        config = CompressionConfig.from_json(t.user_attrs["config"])
        assert ctx.space.config_from_params(t.params) == config
        candidate = compress(ctx.pool, config, finetune=spec.finetune, seed=0)
        assert t.values[0] == accuracy.evaluate(candidate)["accuracy"]
        assert t.values[1] == size.evaluate(candidate)["size_bytes"]
