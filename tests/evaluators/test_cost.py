"""Cheap figures: BOPs is exact, the size bound never exceeds the packed size, and a
candidate over a BOPs or size budget is recorded without any training."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import search.objective as objective
import spaces.distillation as distillation
from evaluators import Task
from evaluators.cost import architecture_cost
from search.driver import open_study, run_study
from search.objective import StudyContext, evaluate_config
from search.results import trials_frame
from search.spec import parse_spec
from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress, compressible_layers
from spaces.config import GRANULARITIES


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)  # 10 positions x 4 out x (2*3) = 240 MACs
        self.fc = nn.Linear(40, 5)  # 200 MACs
        self.norm = nn.LayerNorm(5)  # not compressible: stored as is

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(self.conv(x).flatten(1)))


def test_bops_is_macs_times_kept_fraction_times_weight_and_activation_bits() -> None:
    arch = architecture_cost(Tiny(), (torch.zeros(3, 2, 10),))
    assert arch.layers["conv"].macs == 240 and arch.layers["fc"].macs == 200
    config = CompressionConfig(bits={"conv": 4, "fc": 8}, prune={"fc": 0.5})
    # 240 * 1 * 4 * 32 + 200 * (100 / 200) * 8 * 32
    assert arch.bops(config) == pytest.approx(240 * 4 * 32 + 100 * 8 * 32)
    assert arch.bops(CompressionConfig()) == pytest.approx(440 * 32 * 32)
    # 8-bit activations count around integer layers only
    act8 = CompressionConfig(bits={"conv": 4}, act_bits=8)
    assert arch.bops(act8) == pytest.approx(240 * 4 * 8 + 200 * 32 * 32)
    # the layer norm's 10 floats and every tensor name are counted exactly
    assert arch.other_bytes == 10 * 4


def test_size_bound_counts_every_group_scale() -> None:
    arch = architecture_cost(Tiny(), (torch.zeros(3, 2, 10),))
    bits = {"conv": 4, "fc": 4}
    bound = {
        g: arch.size_lower_bound(CompressionConfig(bits=bits, granularity=g)) for g in GRANULARITIES
    }
    # conv: 4 rows of K = 2 * 3 (one group each); fc: 5 rows of K = 40 (two groups of 32)
    assert bound["channel"] - bound["tensor"] == 2 * (4 + 5 - 2)
    assert bound["g128"] == bound["g64"] == bound["channel"]
    assert bound["g32"] - bound["channel"] == 2 * 5


def test_size_bound_counts_activation_ranges_of_static_layers_only() -> None:
    arch = architecture_cost(Tiny(), (torch.zeros(3, 2, 10),))
    bits = {"conv": 4, "fc": 4}
    static = arch.size_lower_bound(CompressionConfig(bits=bits, act_bits=8))
    dynamic = arch.size_lower_bound(CompressionConfig(bits=bits, act_bits=8, act_mode="dynamic"))
    weight_only = arch.size_lower_bound(CompressionConfig(bits=bits))
    # each static layer stores a 4-float range buffer under its name; dynamic ones store none
    buffers = sum(16 + len(f"{n}.act_qparams".encode()) for n in ("conv", "fc"))
    assert static - weight_only == buffers
    assert dynamic == weight_only


def test_size_bound_never_exceeds_the_packed_size(pool: StudentPool) -> None:
    rng = random.Random(0)
    layers = list(compressible_layers(pool.task.model))
    costs = objective.CostModel(pool.task.model, dict(pool.task.students), pool.task.example_input)
    checked = 0
    for i in range(8):
        student = ["teacher", "w0.5"][i % 2]
        config = CompressionConfig(
            student=student,
            bits={n: rng.choice([2, 3, 4, 8, 16, 32]) for n in layers},
            prune={n: rng.choice([0.0, 0.5, 0.9]) for n in layers},
            channels={n: rng.choice([0.0, 0.25, 0.5]) for n in ("conv1", "conv2", "fc1")},
            act_bits=rng.choice([8, 32]),
            granularity=GRANULARITIES[i % len(GRANULARITIES)],
        )
        built = compress(pool, config, finetune=FinetuneSettings(epochs=i % 2), seed=i)
        bound = costs.figures(config)["size_bound_bytes"]
        assert 0 < bound <= len(built.artifact), (config, bound, len(built.artifact))
        checked += 1
    assert checked == 8


def _tiny_spec(tmp_path: Path, **budget: object) -> StudyContext:
    spec = parse_spec(
        {
            "study": {"name": "cheap", "n_trials": 3},
            "task": {"name": "digits-cnn"},
            "space": {"students": ["teacher", "w0.5"]},
            "distillation": {"epochs": 1},
            "finetune": {"epochs": 1},
            "latency": {"repeats": 30, "warmup": 1},
            "budget": budget,
            # no warm starts: their sensitivity analysis distils every student first
            "sensitivity": {"enabled": False},
        }
    )
    return StudyContext(spec, tmp_path)


@pytest.mark.slow
def test_an_over_budget_candidate_spends_no_training_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # digits-cnn does 337,536 MACs per example: 345.6M BOPs in float32, 86.4M at 8 bits
    ctx = _tiny_spec(tmp_path, max_bops=1e8)
    built: list[CompressionConfig] = []
    real_compress = objective.compress

    def counting(pool: StudentPool, config: CompressionConfig, **kw: object) -> object:
        built.append(config)
        return real_compress(pool, config, **kw)  # type: ignore[arg-type]

    def no_distillation(*_: object, **__: object) -> None:
        raise AssertionError("a student was distilled")

    monkeypatch.setattr(objective, "compress", counting)
    monkeypatch.setattr(distillation, "fit", no_distillation)

    # a float32 student is over the BOPs budget: nothing is built, not even the student
    big = CompressionConfig(student="w0.75")  # 191,712 MACs: 196M BOPs
    out = evaluate_config(ctx, big, seed=0)
    assert not out.feasible and out.constraints["bops"] > 0
    assert out.figures["bops"] > 1e8 and math.isnan(out.figures["accuracy"])
    assert out.skipped.startswith("over budget before training: bops")
    assert built == []

    # through the driver: the teacher baseline is recorded infeasible, the others are built
    study = open_study(ctx.spec, f"sqlite:///{tmp_path / 'study.db'}")
    run_study(ctx, study, n_trials=3)
    df = trials_frame(study)
    teacher = df[df["baseline"] == "teacher"].iloc[0]
    assert teacher["state"] == "COMPLETE" and not teacher["feasible"]
    assert teacher["bops"] == pytest.approx(337_536 * 32 * 32)
    assert "bops" in teacher["skipped"] and math.isnan(teacher["accuracy"])
    assert len(built) == 2 and all(c.bits for c in built)  # uniform-int8 and uniform-int4
    built_rows = df[(df["baseline"] != "teacher") & (df["state"] == "COMPLETE")]
    assert len(built_rows) == 2 and built_rows["feasible"].all()
    # the student baselines are queued next (WAITING): a run that goes on builds them


@pytest.mark.slow
def test_a_size_budget_below_the_fixed_parts_rejects_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _tiny_spec(tmp_path, max_size=100)

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("a candidate was built")

    monkeypatch.setattr(objective, "compress", no_training)
    out = evaluate_config(ctx, CompressionConfig(bits={"fc1": 2}), seed=0)
    assert not out.feasible and out.figures["size_bound_bytes"] > 100
    # the sampler is told the size bound as the size placeholder (and the exact BOPs)
    placeholders = out.values_for(["accuracy", "size_bytes", "latency_ms", "bops"])
    assert placeholders[1:] == [out.figures["size_bound_bytes"], 0.0, out.figures["bops"]]


def test_cost_figures_need_only_the_architecture(digits_task: Task) -> None:
    costs = objective.CostModel(
        digits_task.model, dict(digits_task.students), digits_task.example_input
    )
    small = costs.figures(CompressionConfig(student="w0.25"))
    big = costs.figures(CompressionConfig())
    assert 0 < small["bops"] < big["bops"] and small["macs"] < big["macs"]


def test_structured_pruning_shrinks_the_cheap_figures(digits_task: Task) -> None:
    costs = objective.CostModel(
        digits_task.model, dict(digits_task.students), digits_task.example_input
    )
    full = costs.figures(CompressionConfig())
    half = costs.figures(CompressionConfig(channels={"conv2": 0.5}))
    # conv2 loses half its output channels, so conv2 and fc1 (its consumer) do half the MACs
    arch = costs.architecture("teacher")
    saved = (arch.layers["conv2"].macs + arch.layers["fc1"].macs) / 2
    assert half["macs"] == pytest.approx(full["macs"] - saved)
    assert half["size_bound_bytes"] < full["size_bound_bytes"]


def test_removed_attention_heads_shrink_the_cheap_figures() -> None:
    pytest.importorskip("transformers")
    from tests.spaces.test_heads import BLOCKS, X, tiny_encoder

    costs = objective.CostModel(tiny_encoder(), {}, (X[0][:1], X[1][:1]))
    full = costs.figures(CompressionConfig())
    half = costs.figures(CompressionConfig(heads=dict.fromkeys(BLOCKS, 0.5)))
    assert half["macs"] < full["macs"]
    assert half["size_bound_bytes"] < full["size_bound_bytes"]
    assert costs.figures(CompressionConfig()) == full  # the teacher itself is untouched
