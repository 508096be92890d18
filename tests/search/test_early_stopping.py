"""Multi-objective early stopping at fine-tuning rungs."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from evaluators import AccuracyEvaluator
from search.driver import open_study, run_study
from search.early_stopping import (
    CandidateStopped,
    EarlyStoppingSettings,
    RungJudge,
    RungPoint,
    rung_key,
    rung_table,
)
from search.objective import StudyContext, evaluate_config
from search.rebuild import rebuild
from search.spec import StudyFileError, load_spec, parse_spec
from search.staged import evaluate_candidate
from spaces import CompressionConfig, compress
from spaces.compress import FinetuneSettings
from tests.search._cluster import warm_cache
from tests.studyfile import write_study

FIG = {"accuracy": 0.90, "size_bytes": 1000.0, "latency_ms": 1.0}


def _judge(points: list[RungPoint], **settings: object) -> RungJudge:
    base = {"min_dominating": 2, "startup_trials": 2, "margin": 0.5, "rungs": (0, 1)}
    return RungJudge(EarlyStoppingSettings(**{**base, **settings}), 3, points)  # type: ignore[arg-type]


def _point(n: int, acc: float, size: float = 900.0, latency: float = 1.0) -> RungPoint:
    return RungPoint(n, {0: acc, 1: acc}, size, latency)


def test_a_candidate_clearly_dominated_by_enough_trials_stops_with_its_figures() -> None:
    judge = _judge([_point(3, 0.91), _point(7, 0.95), _point(8, 0.80)])
    with pytest.raises(CandidateStopped) as info:
        judge.check(1, dict(FIG))
    assert info.value.epoch == 1
    assert info.value.dominators == [3, 7]
    assert info.value.figures == FIG
    assert "by trial(s) 3, 7" in info.value.reason


@pytest.mark.parametrize(
    ("points", "why"),
    [
        ([_point(1, 0.904), _point(2, 0.95)], "within the accuracy margin"),
        ([_point(1, 0.95, size=1001), _point(2, 0.95)], "larger"),
        ([_point(1, 0.95, latency=1.06), _point(2, 0.95)], "slower beyond the noise"),
        ([_point(1, 0.95)], "too few finished trials at the rung"),
    ],
)
def test_a_candidate_goes_on_unless_clearly_dominated(points: list[RungPoint], why: str) -> None:
    _judge(points).check(1, dict(FIG))  # does not raise: one dominator is not enough


def test_latency_within_noise_counts_as_no_slower_and_only_rungs_are_checked() -> None:
    points = [_point(1, 0.95, latency=1.04), _point(2, 0.95, latency=0.5)]
    with pytest.raises(CandidateStopped):
        _judge(points).check(0, dict(FIG))
    _judge(points).check(2, dict(FIG))  # epoch 2 is not a rung
    _judge(points, rungs=None).check(2, dict(FIG))  # default rungs: every epoch but the last


def test_rung_table_reads_finished_trials_with_rung_figures() -> None:
    dist = {"x": FloatDistribution(0, 1)}

    def trial(state: TrialState, attrs: dict[str, object]) -> optuna.trial.FrozenTrial:
        values = [0.9, 1.0, 1.0] if state == TrialState.COMPLETE else None
        return optuna.trial.create_trial(
            state=state, values=values, params={"x": 0.5}, distributions=dist, user_attrs=attrs
        )

    figs = {"size_bytes": 10.0, "latency_ms": 2.0, rung_key(0): 0.5, rung_key(1): 0.7}
    trials = [
        trial(TrialState.COMPLETE, figs),
        trial(TrialState.PRUNED, {**figs, rung_key(1): 0.1}),
        trial(TrialState.FAIL, figs),
        trial(TrialState.COMPLETE, {"size_bytes": 10.0, "latency_ms": 2.0}),
    ]
    table = rung_table(trials)
    assert [p.accuracy for p in table] == [{0: 0.5, 1: 0.7}, {0: 0.5, 1: 0.1}]
    assert RungPoint.from_json(table[0].to_json()) == table[0]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("min_dominating = 0", "'early_stopping.min_dominating' must be an int >= 1"),
        ("rungs = [-1]", "'early_stopping.rungs' must be a list of epochs >= 0"),
        ("margin = -1.0", "'early_stopping.margin' must be a number of points >= 0"),
        ("enabled = 1", "'early_stopping.enabled' must be true or false"),
        ("patience = 2", "Unknown key 'early_stopping.patience'"),
    ],
)
def test_bad_early_stopping_settings_name_the_key(section: str, message: str) -> None:
    import tomllib

    data = tomllib.loads(f"[task]\nname='digits-cnn'\n[early_stopping]\n{section}\n")
    with pytest.raises(StudyFileError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_spec(data)


def _early_stopping(*, enabled: bool) -> dict[str, object]:
    return {"enabled": enabled, "startup_trials": 1, "min_dominating": 1, "margin": 0.0}


@pytest.mark.slow
def test_dominated_candidates_stop_early_and_are_recorded_as_pruned(
    tmp_path: Path, warm_weights: Path
) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "es", "n_trials": 14, "sampler": "random"},
        finetune={"epochs": 2},
        early_stopping=_early_stopping(enabled=True),
    )
    spec = load_spec(study_file)
    warm_cache(warm_weights, tmp_path / "out")
    ctx = StudyContext(spec, tmp_path / "out")
    study = open_study(spec, f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    run_study(ctx, study, n_trials=14)
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "random 2-8 bit candidates: some are dominated at a rung"
    assert len(trials) == 14
    by_number = {t.number: t for t in trials}
    for t in pruned:
        epoch = int(t.user_attrs["stopped_epoch"])
        assert epoch in (0, 1)
        acc = t.user_attrs["accuracy"]
        assert acc == t.user_attrs[rung_key(epoch)]
        assert math.isfinite(t.user_attrs["latency_ms"]) and t.user_attrs["size_bytes"] > 0
        assert "dominated after" in t.user_attrs["prune_reason"]
        # each named dominator had finished and was at least as good at that rung
        shown = t.user_attrs["prune_reason"].split("by trial(s) ", 1)[1].split(" and ")[0]
        for n in (int(x) for x in shown.split(", ")):
            d = by_number[n]
            assert d.state in (TrialState.COMPLETE, TrialState.PRUNED)
            assert d.datetime_complete <= t.datetime_start
            assert d.user_attrs[rung_key(epoch)] >= acc
            assert d.user_attrs["size_bytes"] <= t.user_attrs["size_bytes"]
    # finished trials carry their rung figures, and rung 0 is the candidate before fine-tuning
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.number >= 1]
    t = done[0]
    config = CompressionConfig.from_json(t.user_attrs["config"])
    before = compress(ctx.pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    accuracy = AccuracyEvaluator(ctx.task, split="val").evaluate(before)["accuracy"]
    assert t.user_attrs[rung_key(0)] == accuracy
    assert rung_key(1) in t.user_attrs


@pytest.mark.slow
def test_early_stopping_off_prunes_nothing(tmp_path: Path, warm_weights: Path) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "noes", "n_trials": 8, "sampler": "random"},
        finetune={"epochs": 2},
        early_stopping=_early_stopping(enabled=False),
    )
    spec = load_spec(study_file)
    warm_cache(warm_weights, tmp_path / "out")
    study = open_study(spec, f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    run_study(StudyContext(spec, tmp_path / "out"), study, n_trials=8)
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert not any(rung_key(0) in t.user_attrs for t in trials)


def _staged_context(tmp_path: Path, warm_weights: Path, *, epochs: int) -> StudyContext:
    """A one-trial study's context with early stopping on and ``epochs`` of fine-tuning."""
    study_file = write_study(
        tmp_path,
        study={"name": "staged", "n_trials": 1, "sampler": "random"},
        finetune={"epochs": epochs},
        early_stopping=_early_stopping(enabled=True),
    )
    warm_cache(warm_weights, tmp_path / "out")
    return StudyContext(load_spec(study_file), tmp_path / "out")


@pytest.mark.slow
def test_a_gptq_candidate_is_rounded_once_for_all_its_rungs(
    tmp_path: Path, warm_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _staged_context(tmp_path, warm_weights, epochs=2)
    spec = ctx.spec
    module = importlib.import_module("spaces.compress")
    real, calls = module.gptq_round, []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "gptq_round", counted)
    layers = ["conv1", "conv2", "fc1", "fc2"]
    config = CompressionConfig(bits=dict.fromkeys(layers, 4), rounding="gptq")
    judge = RungJudge(spec.early_stopping, 2, [])
    staged = evaluate_candidate(ctx, config, seed=0, judge=judge)
    assert len(calls) == 1  # rung 0 rounds; the fine-tuned build reuses its codes
    direct = evaluate_config(ctx, config, seed=0)
    assert len(calls) == 2
    for key in ("accuracy", "size_bytes"):
        assert staged.figures[key] == direct.figures[key]
    assert rung_key(0) in staged.figures and rung_key(1) in staged.figures


@pytest.mark.slow
def test_a_fine_tuning_that_loses_accuracy_keeps_the_rung_0_candidate(
    tmp_path: Path, warm_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _staged_context(tmp_path, warm_weights, epochs=1)
    spec = ctx.spec
    staged = importlib.import_module("search.staged")
    real = staged.evaluate_config

    def worse(*args: Any, **kwargs: Any) -> Any:  # a fine-tuning that loses 5 points
        outcome = real(*args, **kwargs)
        outcome.figures["accuracy"] -= 0.05
        return outcome

    monkeypatch.setattr(staged, "evaluate_config", worse)
    config = CompressionConfig(bits={"conv1": 4, "conv2": 4, "fc1": 4, "fc2": 4})
    outcome = evaluate_candidate(ctx, config, seed=0, judge=RungJudge(spec.early_stopping, 1))
    before = compress(ctx.pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    rung0 = AccuracyEvaluator(ctx.task, split="val").evaluate(before)["accuracy"]
    assert outcome.figures["accuracy"] == rung0 == outcome.figures[rung_key(0)]
    assert outcome.figures["finetune_kept"] == 0.0
    assert outcome.figures["size_bytes"] == len(before.artifact)
    # rebuilding the trial (test split, export) builds that same rung-0 candidate
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.enqueue_trial({}, user_attrs={"config": config.to_json(), **outcome.figures})
    trial = study.trials[study.ask().number]
    assert rebuild(ctx, trial).artifact == before.artifact

    def better(*args: Any, **kwargs: Any) -> Any:  # a fine-tuning that gains: kept
        outcome = real(*args, **kwargs)
        outcome.figures["accuracy"] = rung0 + 0.01
        return outcome

    monkeypatch.setattr(staged, "evaluate_config", better)
    kept = evaluate_candidate(ctx, config, seed=0, judge=RungJudge(spec.early_stopping, 1))
    assert kept.figures["finetune_kept"] == 1.0 and kept.figures["accuracy"] == rung0 + 0.01
