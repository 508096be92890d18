"""The tests' study-file builder writes valid TOML that the one parser accepts."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from search.spec import load_spec
from tests.studyfile import DEFAULTS, dumps, study_dict, study_toml, write_study


def test_values_of_every_type_round_trip_through_toml() -> None:
    data = {
        "top": "level",
        "a": {
            "s": 'quote " back \\ slash\nnewline é',
            "i": -3,
            "f": 1e-05,
            "big": 1e30,
            "b": True,
            "list": [1, 2.5, "x", False],
            "empty": [],
            "dotted key": 1,
            "b1": {"c": {"d": 1}, "e": 2},
        },
        "empty": {},
    }
    assert tomllib.loads(dumps(data)) == data
    inf = tomllib.loads(dumps({"t": {"inf": math.inf, "ninf": -math.inf, "nan": math.nan}}))["t"]
    assert inf["inf"] == math.inf and inf["ninf"] == -math.inf and math.isnan(inf["nan"])


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError, match="Got None"):
        dumps({"a": {"b": None}})
    with pytest.raises(TypeError, match="TOML keys must be strings"):
        dumps({"a": {1: 2}})


def test_overrides_merge_into_the_defaults_and_none_removes() -> None:
    data = study_dict(
        study={"n_trials": 4, "sampler": "random"},
        space={"students": None, "layers": {"conv1": {"bits": [4]}}},
        budget=None,
        early_stopping={"enabled": False},
    )
    assert data["study"] == {**DEFAULTS["study"], "n_trials": 4, "sampler": "random"}
    assert data["space"] == {"layers": {"conv1": {"bits": [4]}}}
    assert "budget" not in data and data["early_stopping"] == {"enabled": False}
    assert DEFAULTS["space"] == {"students": ["teacher", "w0.5"]}  # the defaults stay as they are
    assert tomllib.loads(study_toml(defaults=False, study={"name": "x"})) == {
        "study": {"name": "x"}
    }


def test_the_default_study_and_a_written_one_parse(tmp_path: Path) -> None:
    path = write_study(tmp_path, study={"name": "small", "n_trials": 3}, finetune={"epochs": 0})
    assert path == tmp_path / "small.toml"
    spec = load_spec(path)
    assert spec.study.name == "small" and spec.study.n_trials == 3
    assert spec.finetune.epochs == 0 and spec.distillation.epochs == 3
    assert load_spec(write_study(tmp_path)).study.name == DEFAULTS["study"]["name"]
