from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from spaces import (
    CompressionConfig,
    FinetuneSettings,
    SearchSpace,
    SpaceSettings,
    StudentPool,
    compress,
)
from spaces.sensitivity import (
    Probe,
    SensitivitySettings,
    SensitivityTable,
    cached_sensitivity,
    distortion,
    measure_sensitivity,
    restricted_space,
    study_forward_rows,
    table_filename,
)
from spaces.task import Split, Task
from spaces.training import predict

#: How much the quiet path counts in the output: its noise is 1e-4 of the loud path's.
QUIET = 0.01
BITS = (2, 3, 4, 6, 8)


class TwoPaths(nn.Module):
    """Two parallel layers of the same shape; the output barely depends on ``quiet``."""

    def __init__(self) -> None:
        super().__init__()
        self.loud = nn.Linear(32, 8)
        self.quiet = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loud(x) + QUIET * self.quiet(x)


def two_paths_task() -> Task:
    """A task whose labels are the model's own predictions (accuracy 1 before compression)."""
    torch.manual_seed(0)
    model = TwoPaths().eval()
    x = torch.randn(600, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(dim=-1)
    split = Split((x,), y)
    return Task("two-paths", model, split, split, split, example_input=(x[:1],))


def two_paths_table(method: str) -> SensitivityTable:
    task = two_paths_task()
    return measure_sensitivity(
        task.model,
        task,
        name="teacher",
        bits={"loud": BITS, "quiet": BITS},
        prune_ratios={"loud": (0.25, 0.5), "quiet": (0.25, 0.5)},
        channel_ratios={},
        granularity="channel",
        settings=SensitivitySettings(method=method, rows=400),
    )


@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_sensitivities_order_a_layer_that_matters_above_one_that_barely_does(method: str) -> None:
    table = two_paths_table(method)
    assert table.method == method and table.rows == 400 and table.base_metric == 1.0
    for kind, values in (("bits", BITS), ("prune", (0.25, 0.5))):
        for v in values:
            loud, quiet = (table.distortion(kind, layer, v) for layer in ("loud", "quiet"))
            # the quiet path's output noise is scaled by QUIET**2 = 1e-4
            assert loud > 1e3 * quiet > 0, (kind, v, loud, quiet)
    loud2 = next(p for p in table.probes if (p.layer, p.kind, p.value) == ("loud", "bits", 2))
    quiet2 = next(p for p in table.probes if (p.layer, p.kind, p.value) == ("quiet", "bits", 2))
    if method == "measured":
        assert loud2.metric_drop is not None and quiet2.metric_drop is not None
        assert loud2.metric_drop > 0.05 and quiet2.metric_drop < 0.01
    else:
        assert loud2.metric_drop is None and quiet2.metric_drop is None


def test_fisher_matches_measurement_on_a_model_linear_in_its_weights() -> None:
    measured, fisher = two_paths_table("measured"), two_paths_table("fisher")
    for p in measured.probes:
        estimate = fisher.distortion(p.kind, p.layer, p.value)
        # first order is exact here; what is left is the diagonal and the random projections
        assert 0.8 < estimate / p.distortion < 1.25, (p, estimate)


def _digits_probes(task: Task, method: str, rows: int = 200) -> SensitivityTable:
    return measure_sensitivity(
        task.model,
        task,
        name="teacher",
        bits={"conv1": (2, 4), "conv2": (4, 16, 32), "fc2": (3,)},
        prune_ratios={"conv2": (0.0, 0.5), "fc1": (0.25,)},
        channel_ratios={"conv1": (0.25,), "fc1": (0.5,), "fc2": (0.5,)},
        granularity="channel",
        settings=SensitivitySettings(method=method, rows=rows),
    )


@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_measuring_never_changes_the_model(digits_task: Task, method: str) -> None:
    before = {k: v.clone() for k, v in digits_task.model.state_dict().items()}
    table = _digits_probes(digits_task, method)
    after = digits_task.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in digits_task.model.parameters())
    # widths >= 16 and ratio 0 are not probed; fc2's channels fix the output: not prunable
    probed = {(p.kind, p.layer, p.value) for p in table.probes}
    assert probed == {
        ("bits", "conv1", 2.0),
        ("bits", "conv1", 4.0),
        ("bits", "conv2", 4.0),
        ("bits", "fc2", 3.0),
        ("prune", "conv2", 0.5),
        ("prune", "fc1", 0.25),
        ("channels", "conv1", 0.25),
        ("channels", "fc1", 0.5),
    }
    assert all(p.distortion >= 0 and math.isfinite(p.distortion) for p in table.probes)


def test_measured_probes_are_what_compress_builds(pool: StudentPool) -> None:
    """A probe is the candidate with that one setting: same outputs as ``compress`` gives."""
    task = pool.task
    table = _digits_probes(task, "measured", rows=360)
    subset = task.val.head(360)
    reference = predict(task.model, subset)
    configs = {
        ("bits", "conv1", 2.0): CompressionConfig(bits={"conv1": 2}),
        ("prune", "conv2", 0.5): CompressionConfig(prune={"conv2": 0.5}),
        ("channels", "conv1", 0.25): CompressionConfig(channels={"conv1": 0.25}),
    }
    for (kind, layer, value), config in configs.items():
        built = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
        outputs = predict(built.model, subset)
        probe = next(p for p in table.probes if (p.kind, p.layer, p.value) == (kind, layer, value))
        assert probe.distortion == pytest.approx(distortion(outputs, reference), rel=1e-5)
        drop = table.base_metric - task.metric(outputs, subset.targets)
        assert probe.metric_drop == pytest.approx(drop, abs=1e-9)


@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_group_wise_bit_probes_quantize_as_compress_does(pool: StudentPool, method: str) -> None:
    task = pool.task
    table = measure_sensitivity(
        task.model,
        task,
        name="teacher",
        bits={"conv2": (3,)},
        prune_ratios={},
        channel_ratios={},
        granularity="g32",
        settings=SensitivitySettings(method=method, rows=200),
    )
    (probe,) = table.probes
    assert probe.distortion > 0 and math.isfinite(probe.distortion)
    if method == "measured":
        subset = task.val.head(200)
        config = CompressionConfig(bits={"conv2": 3}, granularity="g32")
        built = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
        expected = distortion(predict(built.model, subset), predict(task.model, subset))
        assert probe.distortion == pytest.approx(expected, rel=1e-5)


def test_auto_measures_when_cheap_and_estimates_otherwise() -> None:
    task = two_paths_task()

    def method(max_probe_s: float, study_rows: int | None = None, share: float = 0.1) -> str:
        settings = SensitivitySettings(
            method="auto", rows=64, max_probe_s=max_probe_s, max_probe_share=share
        )
        table = measure_sensitivity(
            task.model,
            task,
            name="teacher",
            bits={"loud": (4, 3, 2)},
            prune_ratios={},
            channel_ratios={},
            granularity="tensor",
            settings=settings,
            study_rows=study_rows,
        )
        return table.method

    assert method(1e9) == "measured"
    assert method(1e-12) == "fisher"
    # above the absolute limit, the study's own cost decides: 3 probes of 64 rows each are
    # 192 rows; measured when that is at most a tenth of the rows the trials will pass
    assert method(1e-12, study_rows=10 * 192 * 100) == "measured"
    assert method(1e-12, study_rows=10 * 192 // 100) == "fisher"
    assert method(1e-12, study_rows=192 * 100, share=0.001) == "fisher"


def test_study_forward_rows_count_scoring_and_fine_tuning() -> None:
    assert study_forward_rows(10, val_rows=100, train_rows=400, epochs=0) == 1000
    # each fine-tuning epoch: a forward and a backward pass (two forwards' worth) per row
    assert study_forward_rows(10, val_rows=100, train_rows=400, epochs=2) == 10 * (100 + 2400)


def _table(*probes: Probe) -> SensitivityTable:
    return SensitivityTable("teacher", "measured", "accuracy", 0.97, 100, 0.5, probes)


def test_distortion_interpolates_between_probes() -> None:
    table = _table(
        Probe("bits", "a", 2, 0.16, 0.3),
        Probe("bits", "a", 4, 0.01, 0.01),
        Probe("prune", "a", 0.5, 0.2, 0.1),
        Probe("prune", "a", 0.75, 0.6, 0.2),
    )
    assert table.distortion("bits", "a", 4) == 0.01
    assert table.distortion("bits", "a", 16) == table.distortion("bits", "a", 32) == 0.0
    assert table.distortion("bits", "a", 3) == pytest.approx(0.04)  # log-linear: sqrt(0.16*0.01)
    assert table.distortion("bits", "a", 5) == pytest.approx(0.01 / 4)  # 4x less per bit
    assert table.distortion("prune", "a", 0.0) == 0.0
    assert table.distortion("prune", "a", 0.25) == pytest.approx(0.1)  # from (0, 0)
    assert table.distortion("prune", "a", 0.625) == pytest.approx(0.4)
    assert table.distortion("prune", "a", 0.85) == pytest.approx(0.76)  # last segment's slope
    with pytest.raises(KeyError, match="'channels' probe of layer 'a'"):
        table.distortion("channels", "a", 0.5)


def test_table_round_trips_through_json_and_frames() -> None:
    table = _table(Probe("bits", "a", 2, 0.16, 0.3), Probe("channels", "b", 0.25, 0.01, None))
    again = SensitivityTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table
    frame = table.to_frame()
    assert list(frame.columns) == ["model", "kind", "layer", "value", "distortion", "metric_drop"]
    assert frame["layer"].tolist() == ["a", "b"] and frame["model"].tolist() == ["teacher"] * 2


def test_settings_are_validated_and_fingerprinted() -> None:
    with pytest.raises(ValueError, match=r"^'sensitivity.rows' must be an int >= 1. Got 0 instead"):
        SensitivitySettings(rows=0)
    with pytest.raises(ValueError, match=r"'sensitivity.method' must be one of"):
        SensitivitySettings(method="hessian")
    with pytest.raises(ValueError, match=r"'sensitivity.warm_starts' must be an int >= 0"):
        SensitivitySettings(warm_starts=-1)
    with pytest.raises(ValueError, match=r"'sensitivity.int8_warm_starts' must be an int >= 0"):
        SensitivitySettings(int8_warm_starts=-1)
    with pytest.raises(ValueError, match=r"'sensitivity.max_probe_s' must be a number > 0"):
        SensitivitySettings(max_probe_s=0)
    with pytest.raises(ValueError, match=r"'sensitivity.enabled' must be a bool"):
        SensitivitySettings(enabled=1)  # type: ignore[arg-type]
    base = SensitivitySettings()
    assert base.fingerprint() == SensitivitySettings(warm_starts=0, prune_space=True).fingerprint()
    assert base.fingerprint() != SensitivitySettings(rows=256).fingerprint()
    assert base.fingerprint() != SensitivitySettings(method="fisher").fingerprint()


def test_cache_computes_once_and_reads_the_file_after(tmp_path: Path) -> None:
    table = _table(Probe("bits", "a", 2, 0.16, 0.3))
    calls: list[int] = []

    def compute() -> SensitivityTable:
        calls.append(1)
        return table

    def must_not_run() -> SensitivityTable:
        raise AssertionError("the cached table should have been read")

    path = tmp_path / "sens" / "teacher.json"
    assert cached_sensitivity(path, compute) == table
    assert cached_sensitivity(path, must_not_run) == table
    assert calls == [1]
    assert json.loads(path.read_text()) == table.to_dict()
    path.write_text("{not json")  # a damaged file is measured again
    assert cached_sensitivity(path, compute) == table and calls == [1, 1]


def test_table_filename_changes_with_what_the_figures_depend_on() -> None:
    s = SensitivitySettings()
    kw = {"bits": {"a": [2, 4]}, "prune_ratios": {}, "channel_ratios": {}, "granularity": "channel"}
    name = table_filename("teacher", s, "abc", **kw)  # type: ignore[arg-type]
    assert name.startswith("sensitivity-teacher-") and name.endswith(".json")
    assert name == table_filename("teacher", s, "abc", **{**kw, "bits": {"a": [4, 2]}})  # type: ignore[arg-type]
    assert name != table_filename("teacher", s, "abd", **kw)  # type: ignore[arg-type]
    assert name != table_filename("teacher", s, "abc", **{**kw, "granularity": "tensor"})  # type: ignore[arg-type]
    assert name != table_filename("w0.5", s, "abc", **kw)  # type: ignore[arg-type]


def test_restricted_space_drops_hopeless_widths_and_keeps_the_widest() -> None:
    settings = SpaceSettings(bits=(2, 3, 4, 8, 32), layer_bits={"b": (2, 4)})
    table = _table(
        Probe("bits", "a", 2, 0.4, 0.30),  # alone loses 30 points: hopeless
        Probe("bits", "a", 3, 0.05, 0.004),
        Probe("bits", "b", 2, 0.9, 0.50),
        Probe("bits", "b", 4, 0.2, 0.06),  # even the widest choice is hopeless: it stays
        Probe("bits", "c", 3, 0.1, 0.02),  # hopeless: 2 goes with it (more noise still)
        Probe("bits", "d", 2, 2.0, None),  # estimated only: noise above the signal
        Probe("bits", "d", 3, 0.5, None),
    )
    narrowed = restricted_space(settings, table, max_drop=0.01)
    assert dict(narrowed.layer_bits) == {
        "a": (3, 4, 8, 32),
        "b": (4,),
        "c": (4, 8, 32),
        "d": (3, 4, 8, 32),
    }
    assert narrowed.bits == settings.bits and settings.layer_bits["b"] == (2, 4)
    assert restricted_space(settings, table, max_drop=0.5).layer_bits["a"] == (2, 3, 4, 8, 32)


def test_restricted_space_caps_pruning_below_the_first_hopeless_ratio() -> None:
    settings = SpaceSettings(
        prune_max=0.9, prune_step=0.05, channels_max=0.5, layer_prune_max={"c": 0.2}
    )
    table = _table(
        Probe("prune", "a", 0.25, 0.01, 0.001),
        Probe("prune", "a", 0.5, 0.3, 0.04),  # hopeless: 0.5 and above go, 0.45 stays
        Probe("prune", "a", 0.75, 0.9, 0.30),
        Probe("prune", "b", 0.25, 0.02, 0.002),  # harmless everywhere probed: untouched
        Probe("prune", "b", 0.5, 0.05, 0.005),
        Probe("prune", "c", 0.05, 0.5, 0.20),  # hopeless at the smallest ratio: no pruning
        Probe("prune", "d", 0.33, 1.5, None),  # estimated only: noise above the signal
        Probe("channels", "a", 0.25, 0.8, 0.10),  # a channel group rooted at "a"
    )
    narrowed = restricted_space(settings, table, max_drop=0.01)
    assert dict(narrowed.layer_prune_max) == {"a": 0.45, "c": 0.0, "d": 0.3}
    assert dict(narrowed.layer_channels_max) == {"a": 0.125}
    assert narrowed.prune_max == 0.9 and dict(settings.layer_prune_max) == {"c": 0.2}
    # a looser budget keeps every ratio
    loose = restricted_space(settings, table, max_drop=0.5)
    assert dict(loose.layer_prune_max) == {"c": 0.2, "d": 0.3}
    assert dict(loose.layer_channels_max) == {}
    # the narrowed space has no pruning dimension for "c" and caps the others
    space = SearchSpace(["a", "b", "c", "d"], ["teacher"], narrowed, channel_roots=["a"])
    dists = space.distributions()
    assert "prune.c" not in dists and dists["prune.a"].high == 0.45  # type: ignore[attr-defined]
    assert dists["prune.b"].high == 0.9 and dists["channels.a"].high == 0.125  # type: ignore[attr-defined]
