"""``python -m search.bench samplers --work DIR``: finished runs are kept and not run again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from search.bench import samplers
from search.bench.common import SMOKE_STUDY, tiny_study


@pytest.mark.slow
def test_a_second_call_with_the_same_folder_runs_only_the_missing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONTIER_QUIET_MAX_WAIT_S", "0")
    study = tiny_study(SMOKE_STUDY, tmp_path / "study", n_trials=3)
    work = tmp_path / "work"
    args = argparse.Namespace(samplers=["tpe"], trials=[3], seeds=1, random_trials=None, work=work)
    first, _ = samplers.run_curves(args, study)
    record = work / "runs" / study.stem / "tpe-0.json"
    kept = json.loads(record.read_text())
    assert kept["n_run"] == 3 and len(kept["curve"]) == kept["trials"] >= 3

    ran: list[str] = []
    real = samplers.run_local

    def counting(ctx: object, spec: object, db: Path, n: int) -> object:
        ran.append(db.name)
        return real(ctx, spec, db, n)  # type: ignore[arg-type]

    monkeypatch.setattr(samplers, "run_local", counting)
    args.seeds = 2
    second, _ = samplers.run_curves(args, study)
    assert ran == ["tpe-1.db"]  # seed 0 was read back, seed 1 ran
    again = second[second["seed"] == 0].reset_index(drop=True)
    assert again.equals(first.reset_index(drop=True))

    # a run kept with fewer trials than now asked for is run again
    args.trials = [4]
    ran.clear()
    samplers.run_curves(args, study)
    assert sorted(ran) == ["tpe-0.db", "tpe-1.db"]
    assert json.loads(record.read_text())["n_run"] == 4
