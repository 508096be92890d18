"""Timing candidates side by side (:func:`evaluators.latency.time_interleaved`)."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

from evaluators.latency import LatencySettings, time_interleaved
from evaluators.latency import interleaved as module
from evaluators.latency.interleaved import round_order


def test_each_round_times_every_candidate_once_in_a_rotating_order() -> None:
    names = ["teacher", "int8", "best"]
    orders = [round_order(names, r) for r in range(4)]
    assert orders[0] == names
    assert orders[1] == ["int8", "best", "teacher"]
    assert orders[3] == names  # the rotation wraps
    for order in orders:
        assert sorted(order) == sorted(names)
    # over len(names) rounds each candidate is timed once at each position
    assert {tuple(o[i] for o in orders[:3]) for i in range(3)} == {
        ("teacher", "int8", "best"),
        ("int8", "best", "teacher"),
        ("best", "teacher", "int8"),
    }
    assert round_order([], 2) == []


def test_time_interleaved_interleaves_rebuilds_and_summarises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = {"a": nn.Linear(8, 4), "b": nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))}
    batch = (torch.randn(4, 8),)
    settings = LatencySettings(batch_size=4, repeats=30, warmup=1)
    timed: list[str] = []
    by_model = {id(m): name for name, m in models.items()}
    figures = iter([1.0, 4.0, 3.0, 2.0, 2.0, 5.0])  # a, b | b, a | a, b (rotating)

    def fake_round(run: object, batch: object, settings: object, *, quiet: bool) -> float:
        timed.append(by_model[id(run.model)])  # type: ignore[attr-defined]
        return next(figures)

    monkeypatch.setattr(module, "_round_median", fake_round)
    monkeypatch.setattr(
        module,
        "deployed",
        lambda model, settings, device=None: type("R", (), {"model": model})(),
    )
    monkeypatch.setattr(
        module,
        "rebuilt",
        lambda run, runtime, model, threads, batch, device=None: type("R", (), {"model": model})(),
    )
    out = time_interleaved(models, batch, settings, rounds=3)
    assert timed == ["a", "b", "b", "a", "a", "b"]
    assert out["a"].rounds_ms == (1.0, 2.0, 2.0) and out["b"].rounds_ms == (4.0, 3.0, 5.0)
    assert out["a"].latency_ms == 2.0 and out["b"].latency_ms == 4.0
    assert out["a"].spread == pytest.approx((2.0 - 1.0) / 2.0)
    assert out["b"].spread == pytest.approx((5.0 - 3.0) / 4.0)


def test_time_interleaved_times_real_models() -> None:
    models = {"small": nn.Linear(8, 4), "large": nn.Linear(8, 256)}
    batch = (torch.randn(4, 8),)
    settings = LatencySettings(batch_size=4, repeats=30, warmup=1)
    out = time_interleaved(models, batch, settings, rounds=2, quiet=False)
    for figures in out.values():
        assert len(figures.rounds_ms) == 2 and all(ms > 0 for ms in figures.rounds_ms)
        assert figures.latency_ms == statistics.median(figures.rounds_ms)
        assert figures.spread >= 0
    with pytest.raises(ValueError, match="'rounds' must be an int >= 1"):
        time_interleaved(models, batch, settings, rounds=0)
