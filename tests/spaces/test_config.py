from __future__ import annotations

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
