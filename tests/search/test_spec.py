from __future__ import annotations

import pytest

from search.spec import StudyFileError, load_spec, parse_size, parse_spec

BASE = {"study": {"name": "s"}, "task": {"name": "digits-cnn"}}


def _with(section: str, **values: object) -> dict:
    data = {k: dict(v) for k, v in BASE.items()}
    data.setdefault(section, {}).update(values)
    return data


def test_defaults_and_units() -> None:
    spec = parse_spec(_with("budget", max_size="20KB", max_accuracy_drop=1))
    assert spec.budget.max_size_bytes == 20_000
    assert spec.study.sampler == "tpe" and spec.finetune.epochs >= 0
    assert parse_size("1.5MiB") == 1572864 and parse_size(512) == 512
    assert parse_spec(_with("study", timeout="2h")).study.timeout_s == 7200


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_with("study", colour="red"), r"Unknown key 'study.colour'; allowed keys in \[study\]"),
        ({**BASE, "extra": {}}, r"Unknown section \[extra\]"),
        (_with("study", seed="zero"), r"'study.seed' must be an int. Got 'zero' \(str\)"),
        (_with("space", bits=[4, 99]), r"'space.bits' must hold bit widths from \[2, 3"),
        (_with("space", bits=[4, "8"]), r"'space.bits' must be a list of ints"),
        (_with("study", sampler="cmaes"), r"'study.sampler' must be one of \['tpe'"),
        (_with("budget", max_size="lots"), r"'budget.max_size' must be a positive number"),
        (_with("latency", repeats=5), r"'latency.repeats' must be an int >= 30"),
        (_with("space", layers={"fc1": {"bitz": [4]}}), r"Unknown key 'space.layers.fc1.bitz'"),
        (_with("space", layers={"fc1": {"bits": [1]}}), r"'space.layers.fc1.bits' must hold"),
        ({"study": {"name": "s"}}, r"Missing key 'task.name'"),
        (_with("distillation", alpha=2.0), r"'distillation.alpha' must be in the range"),
    ],
)
def test_bad_input_names_the_key_and_what_is_allowed(data: dict, match: str) -> None:
    with pytest.raises(StudyFileError, match=match):
        parse_spec(data)


def test_not_toml(tmp_path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[study\nname = ")
    with pytest.raises(StudyFileError, match="is not valid TOML"):
        load_spec(p)
    with pytest.raises(StudyFileError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
