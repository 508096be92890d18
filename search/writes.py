"""Writing many values of one trial in one storage transaction.

Optuna writes each attribute, constraint and parameter of a trial in its own transaction (a
session, a trial lookup and a commit each); a trial of the default study makes about forty,
which was most of its storage time. On RDB storages (SQLite, PostgreSQL, ...) the writes below
are one transaction each; other storages (journal file, in-memory) get Optuna's own calls, one
per value, with the same stored result.

These use Optuna's RDB internals (``optuna.storages._rdb``), checked by the storage tests.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql as _pg
from sqlalchemy.dialects import sqlite as _sqlite
from sqlalchemy.orm import Session

#: Optuna's system-attribute prefix for constraint values (``Trial.set_constraint``).
CONSTRAINTS_PREFIX = "constraints:"


def write_trial_attrs(
    study: optuna.Study,
    trial: optuna.Trial | FrozenTrial,
    *,
    user_attrs: Mapping[str, object] | None = None,
    system_attrs: Mapping[str, object] | None = None,
    constraints: Mapping[str, float] | None = None,
    heartbeat: bool = False,
) -> None:
    """Set several user / system attributes and constraints of a running trial at once.

    ``heartbeat`` also records the trial's heartbeat where the storage keeps heartbeats
    (``storage.record_heartbeat``), in the same transaction.

    The same stored result as ``trial.set_user_attr`` for each user attribute,
    ``storage.set_trial_system_attr`` for each system attribute and ``trial.set_constraint``
    for each constraint, but one transaction on RDB storages (SQLite, PostgreSQL, ...).

    Raises:
        ValueError: A constraint value is NaN (as ``Trial.set_constraint``).
        optuna.exceptions.UpdateFinishedTrialError: The trial has already finished.
    """
    user = dict(user_attrs or {})
    system = dict(system_attrs or {})
    for key, given in (constraints or {}).items():
        number = float(given)
        if math.isnan(number):
            raise ValueError(f"Attempted to set a constraint for {key!r}, but NaN is not allowed.")
        system[CONSTRAINTS_PREFIX + key] = number
    storage = study._storage
    backend = _rdb_backend(storage)
    beat = heartbeat and backend is not None and backend.heartbeat_interval is not None
    if backend is None:
        for key, value in user.items():
            storage.set_trial_user_attr(trial._trial_id, key, value)
        for key, value in system.items():
            storage.set_trial_system_attr(trial._trial_id, key, value)  # type: ignore[arg-type,unused-ignore]
    elif user or system or beat:
        _write_rdb_attrs(backend, trial._trial_id, user, system, beat=beat)
    if isinstance(trial, optuna.Trial):  # what trial.set_user_attr / set_constraint keep
        trial._cached_frozen_trial.user_attrs.update(user)
        trial._cached_frozen_trial.system_attrs.update(system)


def _rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under Optuna's cache (``_CachedStorage``), or ``None``."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


_UPSERTS: dict[tuple[str, type], object] = {}


def _upsert(dialect: str, model_cls: type) -> object | None:
    """An ``INSERT ... ON CONFLICT (trial_id, key) DO UPDATE`` of attribute rows, built once
    per dialect and table (a cached statement: one compilation, executed with many rows), or
    ``None`` where the dialect has none."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        insert = _sqlite.insert
    elif dialect == "postgresql":
        insert = _pg.insert  # type: ignore[assignment]
    else:
        return None
    key = (dialect, model_cls)
    if key not in _UPSERTS:
        stmt = insert(model_cls)
        _UPSERTS[key] = stmt.on_conflict_do_update(
            index_elements=[model_cls.trial_id, model_cls.key],  # type: ignore[attr-defined]
            set_={"value_json": stmt.excluded.value_json},
        )
    return _UPSERTS[key]


def _write_rdb_attrs(
    backend: RDBStorage,
    trial_id: int,
    user: dict[str, object],
    system: dict[str, object],
    *,
    beat: bool = False,
) -> None:
    with _create_scoped_session(backend.scoped_session, True) as session:
        row = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, row.state)  # type: ignore[arg-type]
        _add_attrs(session, backend, trial_id, user, system)
        if beat:  # what RDBStorage.record_heartbeat writes
            stored = models.TrialHeartbeatModel.where_trial_id(trial_id, session, True)
            if stored is None:
                session.add(models.TrialHeartbeatModel(trial_id=trial_id))
            else:
                stored.heartbeat = session.execute(sqlalchemy.func.now()).scalar()


def _add_attrs(
    session: Session,
    backend: RDBStorage,
    trial_id: int,
    user: Mapping[str, object],
    system: Mapping[str, object],
) -> None:
    """Upsert attributes of one trial in ``session`` (one statement per table)."""
    tables = (
        (models.TrialUserAttributeModel, user),
        (models.TrialSystemAttributeModel, system),
    )
    for model_cls, attrs in tables:
        if not attrs:
            continue
        upsert = _upsert(backend.engine.name, model_cls)
        if upsert is None:  # MySQL and others: Optuna's own statements, one session
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, model_cls, trial_id, key, value)
            continue
        rows = [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attrs.items()
        ]
        session.connection().execute(upsert, rows)  # type: ignore[call-overload]


@contextlib.contextmanager
def params_in_one_write(study: optuna.Study, trial: optuna.Trial) -> Iterator[dict[str, Any]]:
    """Write the parameters ``trial`` suggests inside the block in one transaction, at its end.

    Wrap one trial's suggestions (``space.suggest(trial)``) in it; user attributes put in the
    dict it yields are written in the same transaction::

        with params_in_one_write(study, trial) as attrs:
            config = space.suggest(trial)
            attrs["config"] = config.to_json()

    Sampling is unchanged: a trial keeps its own parameters in memory while it suggests, and
    the sampler reads only other trials' parameters. On a storage other than Optuna's cached
    RDB storage each parameter is written as Optuna writes it. Parameters suggested before an
    exception are still written (the attributes are not).
    """
    attrs: dict[str, Any] = {}
    storage = study._storage
    backend = _rdb_backend(storage)
    studies = getattr(storage, "_studies", None)
    if backend is None or studies is None or "set_trial_param" in vars(storage):
        yield attrs
        write_trial_attrs(study, trial, user_attrs=attrs)
        return
    pending: list[tuple[str, float, BaseDistribution]] = []
    direct = storage.set_trial_param

    def defer(trial_id: int, name: str, value: float, distribution: BaseDistribution) -> None:
        if trial_id != trial._trial_id:
            direct(trial_id, name, value, distribution)
        else:
            pending.append((name, value, distribution))

    storage.set_trial_param = defer  # type: ignore[method-assign,assignment]
    done = False
    try:
        yield attrs
        done = True
    finally:
        del storage.set_trial_param
        extra = attrs if done else {}
        if pending or extra:
            _write_rdb_params(storage, backend, trial._trial_id, pending, extra)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def _write_rdb_params(
    storage: BaseStorage,
    backend: RDBStorage,
    trial_id: int,
    params: list[tuple[str, float, BaseDistribution]],
    user_attrs: Mapping[str, object],
) -> None:
    """What ``_CachedStorage.set_trial_param`` does for each parameter, and the user
    attributes, in one transaction."""
    cache = storage._studies  # type: ignore[attr-defined]
    with storage._lock, _create_scoped_session(backend.scoped_session, True) as session:  # type: ignore[attr-defined]
        study_id, _ = storage._trial_id_to_study_id_and_number[trial_id]  # type: ignore[attr-defined]
        known = cache[study_id].param_distribution
        row = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, row.state)  # type: ignore[arg-type]
        for name, value, distribution in params:
            previous = known.get(name)
            if previous is None:  # first time in this process: Optuna looks up the stored one
                backend._set_trial_param_without_commit(
                    session, trial_id, name, value, distribution, None
                )
                known[name] = distribution
                continue
            optuna.distributions.check_distribution_compatibility(previous, distribution)
            session.add(
                models.TrialParamModel(
                    trial_id=trial_id,
                    param_name=name,
                    param_value=value,
                    distribution_json=optuna.distributions.distribution_to_json(distribution),
                )
            )
        _add_attrs(session, backend, trial_id, user_attrs, {})


def finish_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    *,
    state: TrialState,
    values: Sequence[float] | None = None,
    user_attrs: Mapping[str, object] | None = None,
    constraints: Mapping[str, float] | None = None,
) -> None:
    """Store a running trial's attributes, constraints, values and final state at once.

    The stored result of :func:`write_trial_attrs` followed by ``study.tell(trial, values,
    state=state)`` (the sampler's ``after_trial`` included), but one transaction on RDB
    storages instead of five (``tell`` alone reads the trial twice before it writes). Values
    must already be checked: finite, one per objective, only for a complete trial.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: The trial has already finished.
    """
    backend = _rdb_backend(study._storage)
    if backend is None:
        write_trial_attrs(study, trial, user_attrs=user_attrs, constraints=constraints)
        study.tell(trial, values, state=state)
        return
    user = dict(user_attrs or {})
    system: dict[str, object] = {}
    for key, given in (constraints or {}).items():
        number = float(given)
        if math.isnan(number):
            raise ValueError(f"Attempted to set a constraint for {key!r}, but NaN is not allowed.")
        system[CONSTRAINTS_PREFIX + key] = number
    floats = None if values is None else [float(v) for v in values]
    study._thread_local.cached_all_trials = None  # as study.tell: a trial's cache ends here
    frozen = trial._cached_frozen_trial
    frozen.user_attrs.update(user)
    frozen.system_attrs.update(system)
    try:
        study.sampler.after_trial(study, frozen, state, floats)
    finally:
        with _create_scoped_session(backend.scoped_session, True) as session:
            row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session, for_update=True)
            backend.check_trial_is_updatable(trial._trial_id, row.state)  # type: ignore[arg-type]
            _add_attrs(session, backend, trial._trial_id, user, system)
            for objective, value in enumerate(floats or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                session.add(
                    models.TrialValueModel(
                        trial_id=trial._trial_id, objective=objective, value=stored, value_type=kind
                    )
                )
            row.state = state
            row.datetime_complete = datetime.datetime.now()
