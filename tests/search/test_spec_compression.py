"""Study-file keys of structured pruning, activation quantization, runtimes, custom students."""

from __future__ import annotations

import pytest

from search.spec import StudyFileError, load_spec, parse_spec
from tests.search.test_spec import _with


def test_compression_keys_reach_the_settings() -> None:
    spec = parse_spec(
        _with(
            "space",
            channels_max=0.5,
            channels_step=0.25,
            channel_importance="l1",
            act_bits=[8, 32],
            granularity=["tensor"],
            custom_students={"tiny": "tests.spaces.my_students:tiny"},
            layers={"conv1": {"channels_max": 0.25}},
        )
    )
    s = spec.space
    assert (s.channels_max, s.channels_step, s.channel_importance) == (0.5, 0.25, "l1")
    assert s.act_bits == (8, 32) and s.granularity == ("tensor",)
    assert dict(s.custom_students) == {"tiny": "tests.spaces.my_students:tiny"}
    assert dict(s.layer_channels_max) == {"conv1": 0.25}
    assert spec.to_dict()["space"]["custom_students"] == {"tiny": "tests.spaces.my_students:tiny"}
    assert parse_spec(_with("latency", runtime="torch-int8")).latency.runtime == "torch-int8"


def test_rounding_key_reaches_the_settings_and_round_trips() -> None:
    spec = parse_spec(_with("space", rounding=["nearest", "gptq"]))
    assert spec.space.rounding == ("nearest", "gptq")
    assert spec.to_data()["space"]["rounding"] == ["nearest", "gptq"]
    assert parse_spec(spec.to_data()) == spec
    assert parse_spec(_with("space", bits=[4, 8])).space.rounding == ("nearest",)  # the default


def test_heads_keys_reach_the_settings_and_round_trip() -> None:
    block = "bert.encoder.layer.0.attention"
    spec = parse_spec(
        _with("space", heads_max=0.5, heads_step=0.25, layers={block: {"heads_max": 0.25}})
    )
    s = spec.space
    assert (s.heads_max, s.heads_step, dict(s.layer_heads_max)) == (0.5, 0.25, {block: 0.25})
    assert spec.to_data()["space"]["layers"] == {block: {"heads_max": 0.25}}
    assert parse_spec(spec.to_data()) == spec
    assert parse_spec(_with("space", bits=[4, 8])).space.heads_max == 0.0  # off by default


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_with("space", channels_max=1.0), r"'space.channels_max' must be a float in the range"),
        (_with("space", heads_max=1.0), r"'space.heads_max' must be a float in the range"),
        (_with("space", act_bits=[4]), r"'space.act_bits' must be a non-empty list of values"),
        (_with("space", granularity=["row"]), r"'space.granularity' must be a non-empty list"),
        (_with("space", rounding=["stochastic"]), r"'space.rounding' must be a non-empty list"),
        (_with("space", rounding="gptq"), r"'space.rounding' must be a list of strings"),
        (_with("space", channel_importance="taylor"), r"'space.channel_importance' must be one"),
        (_with("space", custom_students={"x": 3}), r"'space.custom_students.x' must be a string"),
        (_with("space", custom_students={"x": "nocolon"}), r"must look like"),
        (_with("latency", runtime="tvm"), r"'latency.runtime' must be one of"),
    ],
)
def test_bad_compression_keys_name_the_key(data: dict, match: str) -> None:
    with pytest.raises(StudyFileError, match=match):
        parse_spec(data)


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mlp"])
def test_shipped_studies_are_valid(name: str) -> None:
    spec = load_spec(f"studies/{name}.toml")
    assert spec.space.channels_max > 0
    assert spec.latency.runtime == "onnxruntime"


def test_the_budgeted_minilm_study_is_minilm_with_a_size_budget() -> None:
    base, budgeted = load_spec("studies/minilm.toml"), load_spec("studies/minilm_budget.toml")
    assert budgeted.budget.max_size_bytes == 13_500_000  # 15% of the float 90,277,944 B
    assert budgeted.budget.max_size_bytes <= 0.15 * 90_277_944
    assert budgeted.space.students == ("teacher",)
    # the default study since added 7 bits and dynamic int8 activations (its latency axis);
    # the budgeted one keeps the weight-only widths its BENCHMARKS figures were measured with
    assert set(budgeted.space.bits) < set(base.space.bits) and budgeted.finetune == base.finetune
    assert budgeted.space.act_bits == (32,) and 8 in base.space.act_bits
    assert budgeted.space.rounding == ("gptq",) and base.space.rounding == ("gptq-onepass",)
