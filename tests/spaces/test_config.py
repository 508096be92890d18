from __future__ import annotations

import dataclasses

import pytest

from spaces import CompressionConfig, SearchSpace, SpaceSettings


def test_config_round_trips_through_json_and_is_frozen() -> None:
    config = CompressionConfig(student="w0.5", bits={"fc1": 4, "conv1": 8}, prune={"fc1": 0.5})
    again = CompressionConfig.from_json(config.to_json())
    assert again == config
    assert again.bits_of("fc2") == 32 and again.prune_of("conv1") == 0.0
    with pytest.raises(TypeError):
        config.bits["fc1"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": {"fc1": 9}}, "bit width of layer 'fc1' must be one of"),
        ({"prune": {"fc1": 1.0}}, r"pruning ratio of layer 'fc1' must be a float in the range"),
        ({"student": ""}, "'student' must be a non-empty string"),
        ({"version": 99}, "version 99 is not supported"),
    ],
)
def test_config_validates_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompressionConfig(**kwargs)


def test_space_is_static_and_baselines_are_in_it() -> None:
    space = SearchSpace(["a", "b"], ["teacher", "s"], SpaceSettings(bits=(4, 8, 32)))
    dists = space.distributions()
    assert list(dists) == ["student", "bits.a", "bits.b", "prune.a", "prune.b"]
    base = space.baselines()
    assert set(base) == {"teacher", "uniform-int8", "uniform-int4"}
    assert all(space.contains(c) for c in base.values())
    assert base["teacher"].is_identity()
    params = space.params_from_config(base["uniform-int4"])
    assert space.config_from_params(params) == base["uniform-int4"]


def test_space_rejects_unknown_layers_and_students() -> None:
    with pytest.raises(ValueError, match=r"Unknown layer name\(s\) \['zz'\].*\['a', 'b'\]"):
        SearchSpace(["a", "b"], ["teacher"], SpaceSettings(layer_bits={"zz": (4,)}))
    with pytest.raises(ValueError, match=r"Unknown student\(s\) \['x'\]"):
        SearchSpace(["a"], ["teacher"], SpaceSettings(students=("x",)))


def test_version_1_configs_still_load() -> None:
    old = '{"version":1,"student":"w0.5","bits":{"fc1":4},"prune":{"fc1":0.5}}'
    config = CompressionConfig.from_json(old)
    assert config.version == 2 and config.student == "w0.5" and config.bits_of("fc1") == 4
    assert config.channels_of("fc1") == 0 and config.act_bits == 32
    assert config.granularity == "channel"
    with pytest.raises(ValueError, match=r"Unknown CompressionConfig key\(s\) \['channels'\]"):
        CompressionConfig.from_dict({"version": 1, "channels": {"fc1": 0.5}})
    with pytest.raises(ValueError, match="version 7 is not supported"):
        CompressionConfig.from_dict({"version": 7})


def test_version_2_fields_round_trip_and_validate() -> None:
    config = CompressionConfig(
        bits={"a": 4, "b": 16}, channels={"a": 0.5}, act_bits=8, granularity="tensor"
    )
    assert CompressionConfig.from_json(config.to_json()) == config
    assert config.act_bits_of("a") == 8 and config.act_bits_of("b") == 32  # float layer
    assert not config.is_identity() and CompressionConfig(act_bits=8).is_identity()
    for kwargs, match in [
        ({"channels": {"a": 1.0}}, "channel pruning ratio of layer 'a'"),
        ({"act_bits": 4}, r"'act_bits' must be one of \[8, 32\]"),
        ({"granularity": "row"}, r"'granularity' must be one of \['channel', 'tensor', 'g128'"),
    ]:
        with pytest.raises(ValueError, match=match):
            CompressionConfig(**kwargs)


def test_space_with_channels_activations_and_granularity() -> None:
    settings = SpaceSettings(
        bits=(4, 8, 32),
        channels_max=0.5,
        channels_step=0.25,
        act_bits=(8, 32),
        granularity=("channel", "tensor"),
    )
    space = SearchSpace(["a", "b", "c"], ["teacher"], settings, channel_roots=["b", "a"])
    dists = space.distributions()
    assert [n for n in dists if n.startswith("channels.")] == ["channels.a", "channels.b"]
    assert dists["channels.a"].high == 0.5 and dists["channels.a"].step == 0.25  # type: ignore[attr-defined]
    assert {"act_bits", "granularity"} <= set(dists)
    base = space.baselines()
    assert base["uniform-int8"].act_bits == 8 and base["teacher"].act_bits == 32
    assert all(space.contains(c) for c in base.values())
    params = space.params_from_config(base["uniform-int8"])
    assert space.config_from_params(params) == base["uniform-int8"]
    config = CompressionConfig(channels={"a": 0.25}, act_bits=8, granularity="tensor")
    assert space.config_from_params(space.params_from_config(config)) == config
    # one choice is a fixed setting, not a parameter; configs outside it are outside the space
    fixed = SearchSpace(["a"], ["teacher"], SpaceSettings(act_bits=(32,)))
    assert "act_bits" not in fixed.distributions()
    assert not fixed.contains(CompressionConfig(act_bits=8))


def test_space_searches_group_wise_granularities() -> None:
    space = SearchSpace(["a"], ["teacher"], SpaceSettings(granularity=("channel", "g64")))
    assert list(space.distributions()["granularity"].choices) == ["channel", "g64"]  # type: ignore[attr-defined]
    config = CompressionConfig(bits={"a": 4}, granularity="g64")
    assert space.contains(config)
    assert space.config_from_params(space.params_from_config(config)) == config
    assert CompressionConfig.from_json(config.to_json()) == config
    assert space.baselines()["uniform-int4"].granularity == "channel"  # as before, when offered
    with pytest.raises(ValueError, match=r"'space\.granularity' must be a non-empty list"):
        SpaceSettings(granularity=("g16",))


def test_each_searched_student_is_a_baseline_of_its_own() -> None:
    space = SearchSpace(["a"], ["teacher", "s1", "s2"], SpaceSettings(students=("teacher", "s2")))
    base = space.student_baselines()
    assert base == {"student:s2": CompressionConfig(student="s2")}
    assert all(space.contains(c) for c in base.values())


def test_rounding_validates_round_trips_and_defaults_for_old_forms() -> None:
    gptq = CompressionConfig(bits={"a": 3}, granularity="g32", rounding="gptq")
    assert CompressionConfig.from_json(gptq.to_json()) == gptq
    assert gptq.restricted_to(["a"]).rounding == "gptq"
    # the default is the canonical form of a config built without it, and is left out when stored
    nearest = CompressionConfig(bits={"a": 3}, rounding="nearest")
    assert nearest == CompressionConfig(bits={"a": 3})
    assert "rounding" not in nearest.to_dict()
    old = (  # a version-2 form stored before rounding existed, byte for byte
        '{"act_bits":32,"bits":{"a":3},"channels":{},"granularity":"channel","prune":{},'
        '"student":"teacher","version":2}'
    )
    assert CompressionConfig.from_json(old) == nearest and nearest.to_json() == old
    assert CompressionConfig.from_json('{"version":1,"bits":{"a":3}}').rounding == "nearest"
    with pytest.raises(
        ValueError, match=r"'rounding' must be one of \['nearest', 'gptq', 'gptq-onepass'\]"
    ):
        CompressionConfig(rounding="stochastic")
    with pytest.raises(ValueError, match=r"Unknown CompressionConfig key\(s\) \['rounding'\]"):
        CompressionConfig.from_dict({"version": 1, "rounding": "gptq"})


def test_space_searches_rounding_only_with_two_choices() -> None:
    assert "rounding" not in SearchSpace(["a"], ["teacher"], SpaceSettings()).distributions()
    fixed = SearchSpace(["a"], ["teacher"], SpaceSettings(rounding=("gptq",)))
    assert "rounding" not in fixed.distributions()
    assert fixed.config_from_params({"bits.a": 4}).rounding == "gptq"
    assert not fixed.contains(CompressionConfig(bits={"a": 4}))
    space = SearchSpace(["a"], ["teacher"], SpaceSettings(rounding=("nearest", "gptq")))
    assert list(space.distributions()["rounding"].choices) == ["nearest", "gptq"]  # type: ignore[attr-defined]
    config = CompressionConfig(bits={"a": 4}, rounding="gptq")
    params = space.params_from_config(config)
    assert params["rounding"] == "gptq" and space.config_from_params(params) == config
    assert space.contains(config)
    assert all(c.rounding == "nearest" for c in space.baselines().values())  # as before
    with pytest.raises(ValueError, match=r"'space\.rounding' must be a non-empty list"):
        SpaceSettings(rounding=("stochastic",))
    with pytest.raises(ValueError, match=r"'space\.rounding' must be a non-empty list"):
        SpaceSettings(rounding=())


def test_act_codes_validate_round_trip_and_are_searched_only_with_two_choices() -> None:
    full = CompressionConfig(bits={"a": 8}, act_bits=8, act_codes=255)
    assert CompressionConfig.from_json(full.to_json()) == full
    assert full.to_dict()["act_codes"] == 255 and full.restricted_to(["a"]).act_codes == 255
    # the full range only around weights of at most 7 bits (exact on CPUs without VNNI)
    mixed = CompressionConfig(bits={"a": 8, "b": 7, "c": 4}, act_bits=8, act_codes=255)
    assert [mixed.act_codes_of(k) for k in "abc"] == [127, 255, 255]
    # 127 is the default, left out of the stored form; float or dynamic activations have none
    seven = CompressionConfig(bits={"a": 8}, act_bits=8)
    assert seven.act_codes == 127 and "act_codes" not in seven.to_dict()
    assert CompressionConfig(bits={"a": 8}, act_codes=255).act_codes == 127
    dynamic = CompressionConfig(bits={"a": 7}, act_bits=8, act_mode="dynamic", act_codes=255)
    assert dynamic.act_codes == 127
    with pytest.raises(ValueError, match=r"'act_codes' must be one of \[127, 255\]"):
        CompressionConfig(act_bits=8, act_codes=200)
    with pytest.raises(ValueError, match=r"Unknown CompressionConfig key\(s\) \['act_codes'\]"):
        CompressionConfig.from_dict({"version": 1, "act_codes": 255})

    settings = SpaceSettings(act_bits=(8, 32), act_codes=(255,))
    fixed = SearchSpace(["a"], ["teacher"], settings)
    assert "act_codes" not in fixed.distributions()
    assert fixed.config_from_params({"bits.a": 8, "act_bits": 8}).act_codes == 255
    assert fixed.baselines()["uniform-int8"].act_codes == 255
    only8 = SearchSpace(["a"], ["teacher"], SpaceSettings(act_bits=(8,), act_codes=(255,)))
    assert all(only8.contains(c) for c in only8.baselines().values())  # the teacher too
    assert fixed.contains(full) and not fixed.contains(seven)
    both = SearchSpace(["a"], ["teacher"], SpaceSettings(act_bits=(8,), act_codes=(127, 255)))
    assert list(both.distributions()["act_codes"].choices) == [127, 255]  # type: ignore[attr-defined]
    params = both.params_from_config(full)
    assert params["act_codes"] == 255 and both.config_from_params(params) == full
    with pytest.raises(ValueError, match=r"'space\.act_codes' must be a non-empty list"):
        SpaceSettings(act_codes=(128,))


def test_the_vnni_target_extends_the_full_code_range_to_8_bit_weights() -> None:
    # on every x86 CPU (the default): codes 0-255 only around weights of at most 7 bits
    x86 = CompressionConfig(bits={"a": 8, "b": 7, "c": 16}, act_bits=8, act_codes=255)
    assert [x86.act_codes_of(k) for k in "abc"] == [127, 255, 127]
    assert x86.int8_target == "x86" and "int8_target" not in x86.to_dict()
    # on CPUs with VNNI: around 8-bit weights too (16-bit layers keep float activations)
    vnni = dataclasses.replace(x86, int8_target="vnni")
    assert [vnni.act_codes_of(k) for k in "abc"] == [255, 255, 127]
    assert vnni.to_dict()["int8_target"] == "vnni" and vnni != x86
    assert CompressionConfig.from_json(vnni.to_json()) == vnni
    assert vnni.restricted_to(["a"]).int8_target == "vnni"
    # the target only changes codes 0-255: one canonical form otherwise
    assert CompressionConfig(bits={"a": 8}, act_bits=8, int8_target="vnni").int8_target == "x86"
    assert CompressionConfig(bits={"a": 8}, act_codes=255, int8_target="vnni") == (
        CompressionConfig(bits={"a": 8})
    )
    with pytest.raises(ValueError, match=r"'int8_target' must be one of \['x86', 'vnni'\]"):
        CompressionConfig(bits={"a": 8}, act_bits=8, act_codes=255, int8_target="arm")
    with pytest.raises(ValueError, match=r"Unknown CompressionConfig key\(s\) \['int8_target'\]"):
        CompressionConfig.from_dict({"version": 1, "int8_target": "vnni"})

    # the space's setting goes into every candidate it builds (not searched)
    settings = SpaceSettings(act_bits=(8, 32), act_codes=(255,), int8_target="vnni")
    space = SearchSpace(["a"], ["teacher"], settings)
    assert "int8_target" not in space.distributions()
    built = space.config_from_params({"bits.a": 8, "act_bits": 8})
    assert built.int8_target == "vnni" and built.act_codes_of("a") == 255
    assert space.baselines()["uniform-int8"].act_codes_of("a") == 255
    assert space.contains(built)
    x86_space = SearchSpace(["a"], ["teacher"], dataclasses.replace(settings, int8_target="x86"))
    assert not x86_space.contains(built)  # it builds no candidate for VNNI CPUs only
    assert x86_space.contains(dataclasses.replace(built, int8_target="x86"))
    with pytest.raises(ValueError, match=r"'space\.int8_target' must be one of"):
        SpaceSettings(int8_target="avx512")
