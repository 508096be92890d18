"""``[study] objectives``: BOPs as an objective, fewer objectives, a study keeps its own."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from evaluators.cost import CostModel
from search.driver import open_study
from search.early_stopping import (
    CandidateStopped,
    EarlyStoppingSettings,
    RungJudge,
    RungPoint,
    judge_for,
)
from search.environment import LEGACY_SPEC_ATTR
from search.objective_names import (
    DEFAULT_OBJECTIVES,
    DIRECTIONS,
    OBJECTIVES_ATTR,
    study_objectives,
)
from search.outcome import TrialOutcome
from search.pareto import non_dominated
from search.results import front_mask
from search.spec import StudyFileError, parse_spec
from search.trial import tell
from spaces import CompressionConfig, FinetuneSettings
from tests.conftest import cli_in_process, run_cli
from tests.search._cluster import warm_cache
from tests.studyfile import write_study

FOUR = ("accuracy", "size_bytes", "latency_ms", "bops")
BASE = {"study": {"name": "s"}, "task": {"name": "digits-cnn"}}


def _spec(objectives: list[str] | None = None, name: str = "s"):  # type: ignore[no-untyped-def]
    study: dict[str, object] = {"name": name}
    if objectives is not None:
        study["objectives"] = objectives
    return parse_spec({**BASE, "study": study})


# ---------------------------------------------------------------- the setting


def test_objectives_default_to_three_and_keep_the_canonical_order() -> None:
    assert (
        _spec().study.objectives == DEFAULT_OBJECTIVES == ("accuracy", "size_bytes", "latency_ms")
    )
    assert _spec(["bops", "accuracy"]).study.objectives == ("accuracy", "bops")
    assert _spec(list(reversed(FOUR))).study.objectives == FOUR
    # the stored form round-trips (a report of the storage alone rebuilds the spec)
    spec = _spec(["accuracy", "bops"])
    assert parse_spec(spec.to_data()) == spec


_ALLOWED = (
    "'study.objectives' must list 'accuracy' and at least one of 'size_bytes', "
    "'latency_ms', 'bops', each once. Got {} instead."
)


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        (["size_bytes", "bops"], _ALLOWED.format("['size_bytes', 'bops']")),
        (["accuracy"], _ALLOWED.format("['accuracy']")),
        (["accuracy", "flops"], _ALLOWED.format("['accuracy', 'flops']")),
        (["accuracy", "bops", "bops"], _ALLOWED.format("['accuracy', 'bops', 'bops']")),
        ([], _ALLOWED.format("[]")),
        ("bops", "'study.objectives' must be a list of strings. Got 'bops' (str) instead."),
    ],
)
def test_bad_objective_lists_give_one_line(objectives: object, message: str) -> None:
    with pytest.raises(StudyFileError) as err:
        parse_spec({**BASE, "study": {"name": "s", "objectives": objectives}})
    assert str(err.value) == message


def test_the_cli_refuses_a_bad_objective_list_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(
        tmp_path,
        defaults=False,
        study={"name": "bad", "objectives": ["accuracy", "energy"]},
        task={"name": "digits-cnn"},
    )
    res = cli_in_process(capsys, "run", str(path), "--no-progress")
    assert res.returncode == 2
    assert res.stderr.strip() == "frontier: error: " + _ALLOWED.format("['accuracy', 'energy']")


# ---------------------------------------------------------------- front and early stopping


def test_the_front_is_taken_over_the_study_objectives() -> None:
    rows = [  # accuracy, size, latency, bops
        (0.95, 100.0, 1.0, 4e6),
        (0.95, 100.0, 1.0, 1e6),  # dominates the first once BOPs count
        (0.90, 200.0, 2.0, 1e5),  # worst on the three defaults, fewest BOPs
        (0.97, 300.0, 1.0, 8e6),
    ]
    df = pd.DataFrame(
        [{"state": "COMPLETE", "feasible": True, **dict(zip(FOUR, r, strict=True))} for r in rows]
    )
    assert front_mask(df).tolist() == [True, True, False, True]  # duplicates on three stay
    assert front_mask(df, FOUR).tolist() == [False, True, True, True]
    assert front_mask(df, ("accuracy", "bops")).tolist() == [False, True, True, True]
    assert front_mask(df, ("accuracy", "size_bytes")).tolist() == [True, True, False, True]


def _judge(objectives: tuple[str, ...], points: list[RungPoint]) -> RungJudge:
    settings = EarlyStoppingSettings(startup_trials=1, min_dominating=1, margin=0.5, rungs=(0,))
    return RungJudge(settings, 2, points, objectives)


def test_early_stopping_compares_only_the_study_objectives() -> None:
    figures = {"accuracy": 0.90, "size_bytes": 1000.0, "latency_ms": 1.0, "bops": 1e6}
    bigger_fewer_bops = RungPoint(1, {0: 0.95}, 5000.0, 3.0, 5e5)
    # on the defaults it is larger and slower: no dominance; on accuracy + BOPs it dominates
    _judge(DEFAULT_OBJECTIVES, [bigger_fewer_bops]).check(0, dict(figures))
    with pytest.raises(CandidateStopped):
        _judge(("accuracy", "bops"), [bigger_fewer_bops]).check(0, dict(figures))
    # BOPs counts when it is an objective: more BOPs is not dominating
    smaller_more_bops = RungPoint(2, {0: 0.95}, 500.0, 0.5, 2e6)
    with pytest.raises(CandidateStopped):
        _judge(DEFAULT_OBJECTIVES, [smaller_more_bops]).check(0, dict(figures))
    _judge(FOUR, [smaller_more_bops]).check(0, dict(figures))
    # a point that never recorded BOPs dominates nobody on BOPs
    unknown = RungPoint(3, {0: 0.95}, 500.0, 0.5)
    _judge(FOUR, [unknown]).check(0, dict(figures))
    assert RungPoint.from_json(smaller_more_bops.to_json()) == smaller_more_bops
    old = RungPoint.from_json([3, {"0": 0.95}, 500.0, 0.5])  # a table from an older release
    assert math.isnan(old.bops)


def test_judge_for_carries_the_objectives_and_reads_bops_from_trials() -> None:
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        values=[0.9, 1.0],
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"size_bytes": 10.0, "latency_ms": 2.0, "bops": 7.0, "accuracy@0": 0.5},
    )
    judge = judge_for(
        EarlyStoppingSettings(rungs=(0,)),
        FinetuneSettings(epochs=1),
        [trial],
        objectives=("accuracy", "bops"),
    )
    assert judge is not None and tuple(judge.objectives) == ("accuracy", "bops")
    assert judge.table[0].bops == 7.0


# ---------------------------------------------------------------- the stored study


def test_a_study_records_its_objectives_and_refuses_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(_spec(["accuracy", "bops"]), url)
    assert study.user_attrs[OBJECTIVES_ATTR] == ["accuracy", "bops"]
    assert study.metric_names == ["accuracy", "bops"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study_objectives(study) == ("accuracy", "bops")
    open_study(_spec(["bops", "accuracy"]), url)  # the same set in another order: fine
    with pytest.raises(StudyFileError) as err:
        open_study(_spec(), url)
    assert str(err.value) == (
        f"Study 's' in {url!r} optimises ['accuracy', 'bops'], but 'study.objectives' is "
        "['accuracy', 'size_bytes', 'latency_ms']; set it back, or choose another study name "
        "or storage."
    )
    assert "\n" not in str(err.value)


def test_a_study_recorded_before_the_setting_means_the_three_defaults(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(
        study_name="s", storage=url, directions=[DIRECTIONS[n] for n in DEFAULT_OBJECTIVES]
    )
    old.set_user_attr(LEGACY_SPEC_ATTR, {"recorded": "by an older release"})
    assert study_objectives(old) == DEFAULT_OBJECTIVES
    with pytest.raises(StudyFileError, match=r"optimises \['accuracy', 'size_bytes', 'latency"):
        open_study(_spec(list(FOUR)), url)
    study = open_study(_spec(), url)  # the defaults: resumes, and now records them
    assert study.user_attrs[OBJECTIVES_ATTR] == list(DEFAULT_OBJECTIVES)


def test_told_values_follow_the_study_objectives_and_placeholders_for_skipped(
    tmp_path: Path,
) -> None:
    study = open_study(_spec(list(FOUR)), f"sqlite:///{tmp_path / 'study.db'}")
    figures = {"accuracy": 0.9, "size_bytes": 100.0, "latency_ms": 1.5, "bops": 3e6}
    tell(study, study.ask(), TrialOutcome(dict(figures)))  # objectives read from study
    skipped = TrialOutcome(
        {**figures, "accuracy": math.nan, "latency_ms": math.nan},
        {"bops": 1.0},
        objective_values={"accuracy": 0.0, "size_bytes": 50.0, "latency_ms": 0.0, "bops": 3e6},
        skipped="over budget before training: bops",
    )
    tell(study, study.ask(), skipped, FOUR)
    done = study.get_trials()
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert done[0].values == [0.9, 100.0, 1.5, 3e6]
    assert done[1].values == [0.0, 50.0, 0.0, 3e6]
    assert done[1].user_attrs["skipped"] == "over budget before training: bops"


def test_the_ray_searcher_tells_the_study_objectives_and_placeholders(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from search.ray_backend import OptunaAskTell

    spec = _spec(["accuracy", "bops"])
    study = open_study(spec, f"sqlite:///{tmp_path / 'study.db'}")
    searcher = OptunaAskTell(study, SimpleNamespace(spec=spec), {}, n_trials=2, deadline=None)  # type: ignore[arg-type]
    try:
        import json

        outcomes = [
            TrialOutcome({"accuracy": 0.9, "bops": 2e6}, worker="w"),
            TrialOutcome(  # stopped by the cheap checks (NaN accuracy): placeholders are told
                {"accuracy": math.nan, "bops": 9e6},
                {"bops": 1.0},
                objective_values={"accuracy": 0.0, "bops": 9e6},
                skipped="over budget before training: bops",
                worker="w",
            ),
        ]
        for i, outcome in enumerate(outcomes):
            searcher.live[str(i)] = study.ask()
            result = {"frontier": json.dumps(outcome.to_json())}
            searcher.on_trial_complete(str(i), result)
    finally:
        searcher.close()
    done = study.get_trials()
    assert [t.values for t in done] == [[0.9, 2e6], [0.0, 9e6]]
    assert done[1].user_attrs["skipped"] == "over budget before training: bops"


# ---------------------------------------------------------------- end to end, real CLI


def _run(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    warm: Path,
    name: str,
    objectives: tuple[str, ...],
    n: int,
    budget: dict[str, float] | None = None,
):
    path = write_study(
        tmp_path,
        study={"name": name, "n_trials": n, "sampler": "random", "objectives": list(objectives)},
        budget=budget or {},
    )
    out = tmp_path / "results" / name  # the study file's default results folder
    warm_cache(warm, out)
    res = run_cli("run", str(path), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    return path, out, res


def _assert_front_is_exactly_the_non_dominated_set(out: Path, objectives: tuple[str, ...]) -> None:
    trials = pd.read_csv(out / "trials.csv")
    front = pd.read_csv(out / "front.csv")
    ok = trials[(trials["state"] == "COMPLETE") & trials["feasible"].astype(bool)]
    ok = ok[np.isfinite(ok[list(objectives)].to_numpy(dtype=float)).all(axis=1)]
    keep = non_dominated(
        ok[list(objectives)].to_numpy(dtype=float), [DIRECTIONS[o] for o in objectives]
    )
    assert sorted(front["trial"]) == sorted(ok.loc[keep, "trial"])
    assert len(front) >= 1
    # no front point is dominated by any feasible trial on every objective
    for _, f in front.iterrows():
        for _, t in ok.iterrows():
            better = [
                (t[o] >= f[o]) if DIRECTIONS[o] == "maximize" else (t[o] <= f[o])
                for o in objectives
            ]
            strictly = [t[o] != f[o] for o in objectives]
            assert not (all(better) and any(strictly)), (f["trial"], t["trial"])


@pytest.mark.slow
def test_a_four_objective_study_runs_reports_and_resumes_only_with_its_objectives(
    tmp_path: Path, warm_weights: Path
) -> None:
    path, out, res = _run(tmp_path, warm_weights, "four", FOUR, n=8)
    assert "bops" in res.stdout.split("Pareto front", 1)[1].splitlines()[1]  # printed column
    _assert_front_is_exactly_the_non_dominated_set(out, FOUR)
    db = out / "study.db"
    with sqlite3.connect(db) as conn:  # four values stored per complete trial
        counts = conn.execute("SELECT COUNT(*) FROM trial_values GROUP BY trial_id").fetchall()
    assert {c for (c,) in counts} == {4}

    status = run_cli("status", "--storage", f"sqlite:///{db}", "--study", "four")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "objectives: accuracy, size_bytes, latency_ms, bops" in lines
    hv = next(ln for ln in lines if ln.startswith("hypervolume: "))
    assert "bops 1)" in hv and float(hv.split()[1]) > 0

    report = run_cli("report", str(db), "--dest", str(tmp_path / "report"))  # storage alone
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'id="s0-acc-bops"' in html  # the accuracy-against-BOPs plot
    assert "accuracy, size_bytes, latency_ms, bops" in html
    assert (tmp_path / "report" / "report-four-accuracy-bops.png").stat().st_size > 10_000
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Objectives: accuracy, size_bytes, latency_ms, bops." in md

    front = pd.read_csv(out / "front.csv")
    limit = float(front["bops"].median())
    select = run_cli("select", str(db), "--max-bops", repr(limit), "--no-remeasure")
    assert select.returncode == 0, select.stderr[-3000:]
    chosen = int(select.stdout.split("Selected trial ", 1)[1].split()[0].rstrip(":"))
    assert float(front.loc[front["trial"] == chosen, "bops"].iloc[0]) <= limit

    # resuming with other objectives: one line, exit 2, nothing run
    before = len(optuna.load_study(study_name="four", storage=f"sqlite:///{db}").trials)
    text = path.read_text().replace("objectives = [", "# objectives = [")
    path.write_text(text)
    again = run_cli("run", str(path), "--no-progress", "--n-trials", "9")
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1, again.stderr
    assert again.stderr.startswith("frontier: error: Study 'four' in ")
    assert "optimises ['accuracy', 'size_bytes', 'latency_ms', 'bops']" in again.stderr
    after = optuna.load_study(study_name="four", storage=f"sqlite:///{db}").trials
    assert len(after) == before


@pytest.mark.slow
def test_a_study_of_accuracy_and_bops_only_ranks_by_them(
    tmp_path: Path, warm_weights: Path, digits_task: object
) -> None:
    costs = CostModel(digits_task.model, dict(digits_task.students), digits_task.example_input)  # type: ignore[attr-defined]
    teacher_bops = costs.figures(CompressionConfig())["bops"]
    # the float teacher is over; int8 is not
    budget = {"max_bops": float(f"{teacher_bops / 2:.6g}")}
    path, out, _ = _run(tmp_path, warm_weights, "ab", ("accuracy", "bops"), n=8, budget=budget)
    trials = pd.read_csv(out / "trials.csv")
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["state"] == "COMPLETE" and not teacher["feasible"]
    assert str(teacher["skipped"]).startswith("over budget before training: bops")
    _assert_front_is_exactly_the_non_dominated_set(out, ("accuracy", "bops"))
    front = pd.read_csv(out / "front.csv").sort_values("bops")
    # on two objectives the front is a staircase: more BOPs buys strictly more accuracy
    assert front["accuracy"].is_monotonic_increasing and front["accuracy"].is_unique
    status = run_cli("status", str(path))
    assert status.returncode == 0, status.stderr
    assert "objectives: accuracy, bops" in status.stdout.splitlines()
