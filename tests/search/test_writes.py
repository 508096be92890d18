"""One transaction per write (search/writes.py): the same stored trial as Optuna's own calls,
over every storage."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.storage import StorageSettings, make_storage
from search.writes import params_in_one_write, write_trial_attrs
from tests.search._cluster import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

FIGURES = {"accuracy": 0.93, "size_bytes": 1234.0, "note": "text", "missing": math.nan}
CONSTRAINTS = {"accuracy_drop": -0.5, "size": 0.25}
SPACE = {
    "bits": CategoricalDistribution([2, 4, 8, 32]),
    "prune": FloatDistribution(0.0, 0.9, step=0.05),
    "width": IntDistribution(1, 8),
}


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return str(request.getfixturevalue("postgres_url"))


def _suggest(trial: optuna.Trial) -> dict[str, object]:
    return {name: trial._suggest(name, dist) for name, dist in SPACE.items()}


def _study(url: str, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=make_storage(url, StorageSettings()),
        directions=["maximize", "minimize"],
        sampler=sampler,
    )


def _stored(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = make_storage(url, StorageSettings())  # a fresh reader: nothing cached
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _run(study: optuna.Study, batched: bool, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        if batched:
            with params_in_one_write(study, trial) as attrs:
                params = _suggest(trial)
                attrs["config"] = repr(params)
            write_trial_attrs(
                study,
                trial,
                user_attrs={**FIGURES, "n": trial.number},
                system_attrs={"lease": {"pid": 1}},
                constraints=CONSTRAINTS,
            )
        else:
            params = _suggest(trial)
            trial.set_user_attr("config", repr(params))
            for key, value in {**FIGURES, "n": trial.number}.items():
                trial.set_user_attr(key, value)
            study._storage.set_trial_system_attr(trial._trial_id, "lease", {"pid": 1})
            for key, value in CONSTRAINTS.items():
                trial.set_constraint(key, value)
        assert trial.params == params
        study.tell(trial, [float(params["prune"]), float(params["width"])])  # type: ignore[arg-type]


def _record(t: optuna.trial.FrozenTrial) -> tuple[object, ...]:
    user = {k: ("nan" if v != v else v) for k, v in t.user_attrs.items()}
    return (t.number, t.state, t.params, t.distributions, user, t.system_attrs, t.values)


def test_batched_writes_store_what_optunas_calls_store(url: str) -> None:
    # same seed, same sampler: the batched study must sample and store exactly the same
    sampler: Callable[[], optuna.samplers.BaseSampler] = lambda: optuna.samplers.TPESampler(  # noqa: E731
        seed=3, multivariate=True, n_startup_trials=3, constant_liar=True
    )
    _run(_study(url, "plain", sampler()), batched=False, n=6)
    _run(_study(url, "batched", sampler()), batched=True, n=6)
    plain, batched = _stored(url, "plain"), _stored(url, "batched")
    assert [_record(t) for t in batched] == [_record(t) for t in plain]
    assert all(t.state == TrialState.COMPLETE for t in batched)
    assert batched[0].user_attrs["note"] == "text"
    assert batched[0].system_attrs["constraints:size"] == 0.25


def test_a_finished_trial_and_a_nan_constraint_are_refused(url: str) -> None:
    study = _study(url, "done", optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    with pytest.raises(ValueError, match="NaN is not allowed"):
        write_trial_attrs(study, trial, constraints={"size": math.nan})
    study.tell(trial, [1.0, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        write_trial_attrs(study, trial, user_attrs={"late": 1})


def test_params_suggested_before_an_error_are_still_written(url: str) -> None:
    study = _study(url, "error", optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    with pytest.raises(RuntimeError), params_in_one_write(study, trial) as attrs:
        bits = trial.suggest_categorical("bits", [2, 4, 8])
        attrs["config"] = "never written"
        raise RuntimeError("a failing suggestion")
    assert "set_trial_param" not in vars(study._storage)  # the storage is itself again
    stored = _stored(url, "error")[0]
    assert stored.params == {"bits": bits}
    assert "config" not in stored.user_attrs
