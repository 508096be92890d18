"""Fixtures of the storage contract suite: one storage URL per kind frontier supports."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from search.storage import StorageSettings, make_storage
from tests.search._cluster import POSTGRES_ADMIN_URL, _postgres_or_skip

#: Every storage kind frontier supports; a new kind is added here and in :func:`storage_url`.
KINDS = ("sqlite", "journal", "postgresql")


@pytest.fixture()
def study_name() -> str:
    """A study name no other test uses (PostgreSQL studies share one database)."""
    return f"contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=KINDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path, study_name: str) -> Iterator[str]:
    """A storage URL of each kind. PostgreSQL: ``FRONTIER_TEST_POSTGRES`` (default
    ``postgresql://postgres@127.0.0.1:5432/test``), skipped when unreachable, a failure in CI;
    the study of the test is deleted afterwards."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
    elif kind == "journal":
        yield f"journal:{tmp_path / 'shared' / 'study.log'}"
    else:
        _postgres_or_skip().dispose()
        yield POSTGRES_ADMIN_URL
        storage = make_storage(POSTGRES_ADMIN_URL, StorageSettings())
        if study_name in optuna.study.get_all_study_names(storage):
            optuna.delete_study(study_name=study_name, storage=storage)
        storage.engine.dispose()  # type: ignore[attr-defined]
        gc.collect()  # the tests' storages close their pooled connections
