"""Sensitivity-seeded warm starts: enqueued after the baselines, once per study, measured once."""

from __future__ import annotations

from pathlib import Path

import pytest

import search.warm_starts
import spaces.sensitivity
from search.driver import open_study, run_study
from search.objective import StudyContext
from search.results import trials_frame
from search.spec import StudyFileError, parse_spec
from search.study_attrs import SENSITIVITY_ATTR
from search.warm_starts import WARM_STARTS_ATTR, enqueue_warm_starts
from spaces import FinetuneSettings, SensitivityTable, compress
from tests.studyfile import study_dict

WARM = {"enabled": True, "warm_starts": 3, "method": "measured", "rows": 120}


def _spec(**sections: object) -> object:
    base: dict[str, object] = {
        "study": {"name": "warm", "n_trials": 8},
        "space": {"students": ["teacher"], "bits": [2, 4, 8, 32], "prune_max": 0.5},
        "sensitivity": WARM,
    }
    return parse_spec(study_dict(**{**base, **sections}))  # type: ignore[arg-type]


def _run(spec: object, out: Path, n_trials: int) -> object:
    ctx = StudyContext(spec, out)  # type: ignore[arg-type]
    study = open_study(spec, f"sqlite:///{out / 'study.db'}")  # type: ignore[arg-type]
    run_study(ctx, study, n_trials=n_trials)
    return study


def test_warm_starts_follow_the_baselines_once_and_the_cache_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec()
    study = _run(spec, tmp_path, 6)
    df = trials_frame(study)  # type: ignore[arg-type]
    labels = study.user_attrs[WARM_STARTS_ATTR]  # type: ignore[attr-defined]
    assert 1 <= len(labels) <= 3
    # queued right after the three baselines, in order, each carrying its label
    baselines = df[df["baseline"] != ""]["trial"].tolist()
    assert baselines == [0, 1, 2]
    warm = df[df["warm_start"] != ""]
    assert warm["trial"].tolist()[: len(labels)] == list(range(3, 3 + len(labels)))[: len(warm)]
    assert set(warm["warm_start"]) <= set(labels)
    tables = study.user_attrs[SENSITIVITY_ATTR]  # type: ignore[attr-defined]
    assert set(tables) == {"teacher"}
    table = SensitivityTable.from_dict(tables["teacher"])
    assert table.method == "measured" and table.rows == 120
    assert {p.kind for p in table.probes} >= {"bits", "prune"}
    cached = sorted((tmp_path / "cache").glob("sensitivity-teacher-*.json"))
    assert len(cached) == 1

    # resume: nothing measured again (the cache is read), nothing enqueued again
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the sensitivity was measured again instead of read")

    monkeypatch.setattr(spaces.sensitivity, "measure_sensitivity", refuse)
    monkeypatch.setattr("search.sensitivities.measure_sensitivity", refuse)
    again = _run(spec, tmp_path, 9)
    df2 = trials_frame(again)  # type: ignore[arg-type]
    assert len(df2) >= 9
    assert (df2["warm_start"] != "").sum() == len(labels)
    assert again.user_attrs[WARM_STARTS_ATTR] == labels  # type: ignore[attr-defined]
    ctx = StudyContext(spec, tmp_path)  # type: ignore[arg-type]
    assert enqueue_warm_starts(again, ctx).labels == ()  # type: ignore[arg-type]


def test_warm_starts_meet_the_budget_and_lie_in_the_space(tmp_path: Path) -> None:
    spec = _spec(budget={"max_size": "12KB", "max_accuracy_drop": 5.0})
    ctx = StudyContext(spec, tmp_path)  # type: ignore[arg-type]
    study = open_study(spec, f"sqlite:///{tmp_path / 'study.db'}")  # type: ignore[arg-type]
    done = enqueue_warm_starts(study, ctx)
    assert done.labels and done.seconds > 0
    waiting = [t for t in study.get_trials(deepcopy=False) if "warm_start" in t.user_attrs]
    assert len(waiting) == len(done.labels)
    for t in waiting:
        config = ctx.space.config_from_params(t.params or t.system_attrs["fixed_params"])
        assert ctx.space.contains(config)
        assert ctx.costs.figures(config)["size_bound_bytes"] <= 12_000
        # packed for real (before any fine-tuning), header included
        packed = compress(ctx.pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
        assert len(packed.artifact) <= 12_000


def test_turned_off_enqueues_nothing(tmp_path: Path) -> None:
    spec = _spec(sensitivity={"enabled": False})
    study = _run(spec, tmp_path, 4)
    assert WARM_STARTS_ATTR not in study.user_attrs  # type: ignore[attr-defined]
    assert not list((tmp_path / "cache").glob("sensitivity-*.json"))


def test_space_pruning_drops_hopeless_bit_widths_the_same_on_every_worker(
    tmp_path: Path,
) -> None:
    spec = _spec(
        sensitivity={**WARM, "prune_space": True},
        budget={"max_accuracy_drop": 0.5},
    )
    plain = StudyContext(_spec(), tmp_path / "plain")  # type: ignore[arg-type]
    first = StudyContext(spec, tmp_path / "pruned")  # type: ignore[arg-type]
    second = StudyContext(spec, tmp_path / "pruned")  # type: ignore[arg-type]
    before = {n: plain.space.bits_choices(n) for n in plain.space.layers}
    after = {n: first.space.bits_choices(n) for n in first.space.layers}
    assert after == {n: second.space.bits_choices(n) for n in second.space.layers}
    assert all(set(after[n]) <= set(before[n]) and max(after[n]) == 32 for n in after)
    # 2 bits on a layer alone costs far more than half a point on this model
    assert any(2 not in after[n] for n in after)
    # pruning ratios: capped below the first hopeless probe, the same on every worker
    caps = dict(first.space.settings.layer_prune_max)
    assert caps == dict(second.space.settings.layer_prune_max)
    assert caps and all(0 <= v < 0.5 for v in caps.values()) and set(caps) <= set(after)


def test_space_pruning_needs_an_accuracy_budget() -> None:
    with pytest.raises(StudyFileError, match=r"'sensitivity\.prune_space' needs"):
        _spec(sensitivity={**WARM, "prune_space": True}, budget={"max_accuracy_drop": None})


def test_the_sensitivity_settings_survive_the_study_file_round_trip() -> None:
    spec = _spec()
    again = parse_spec(spec.to_data())  # type: ignore[attr-defined]
    assert again == spec
    assert again.sensitivity.warm_starts == 3 and again.sensitivity.method == "measured"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("rows", 0, "'sensitivity.rows'"), ("method", "hessian", "'sensitivity.method'")],
)
def test_bad_sensitivity_settings_name_the_key(key: str, value: object, match: str) -> None:
    with pytest.raises(StudyFileError, match=match):
        _spec(sensitivity={**WARM, key: value})


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_workers_enqueue_the_warm_starts_once(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Two workers start on one study at once: both measure (or read) the sensitivities, but
    the one that takes the study's lock second finds the warm starts there and adds none."""
    spec = _spec()
    url = (
        request.getfixturevalue("postgres_url")
        if storage == "postgresql"
        else f"sqlite:///{tmp_path / 'study.db'}"
    )
    first = open_study(spec, url)  # type: ignore[arg-type]
    second = open_study(spec, url)  # type: ignore[arg-type]
    first_ctx = StudyContext(spec, tmp_path / "worker-1")  # type: ignore[arg-type]
    second_ctx = StudyContext(spec, tmp_path / "worker-2")  # type: ignore[arg-type]
    measure = search.warm_starts.sensitivity_tables
    other: list[object] = []

    def meanwhile(*args: object, **kwargs: object) -> object:
        tables = measure(*args, **kwargs)  # type: ignore[arg-type]
        if not other:  # while the first worker measures, the second one does all of it
            other.append(None)
            other[0] = enqueue_warm_starts(second, second_ctx)  # type: ignore[arg-type]
        return tables

    monkeypatch.setattr(search.warm_starts, "sensitivity_tables", meanwhile)
    late = enqueue_warm_starts(first, first_ctx)  # type: ignore[arg-type]
    early = other[0]
    assert early.labels  # type: ignore[attr-defined]
    assert late.labels == () and late.reason == "already enqueued for this study"
    waiting = [t for t in first.get_trials(deepcopy=False) if "warm_start" in t.user_attrs]
    assert [t.user_attrs["warm_start"] for t in waiting] == list(early.labels)  # type: ignore[attr-defined]
    assert first.user_attrs[WARM_STARTS_ATTR] == list(early.labels)  # type: ignore[attr-defined]
