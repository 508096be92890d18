"""Helpers for tests that run studies in several processes, kill them, and share storages."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import REPO
from tests.studyfile import DEFAULTS

#: The PostgreSQL server the cluster tests use (started before each session and before CI).
POSTGRES_ADMIN_URL = os.environ.get(
    "FRONTIER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def warm_cache(cache_dir: Path, out: Path) -> None:
    """Copy the session's trained teacher (and students) into a results folder's cache."""
    dest = out / "cache"
    dest.mkdir(parents=True, exist_ok=True)
    for f in cache_dir.glob("*.safetensors"):
        shutil.copy2(f, dest / f.name)


def start_cli(
    *args: str, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``frontier`` in the background (its own process group), output into ``log``;
    ``env``: its environment (default: this process's)."""
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "search.cli", *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # a test run started in the background inherits SIGINT ignored, and Python then
            # installs no KeyboardInterrupt handler: give the child the default back
            preexec_fn=_default_sigint,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a process we started (only that process, by its id)."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)


def _postgres_or_skip() -> sa.engine.Engine:
    from search.storage import normalise_url

    engine = sa.create_engine(normalise_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        reason = (
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} "
            f"({type(exc).__name__}); set FRONTIER_TEST_POSTGRES to a server URL"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}. CI must run the cluster-storage tests.")
        pytest.skip(reason)
    return engine


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    engine = _postgres_or_skip()
    name = f"frontier_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from search.storage import _ENGINES

        for key in [k for k in _ENGINES if name in k]:
            _ENGINES.pop(key).dispose()
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="session")
def warm_weights(cache_dir: Path, digits_task: object) -> Path:
    """The session cache with the teacher and the ``w0.5`` student of the default study of
    :mod:`tests.studyfile` trained (its distillation settings)."""
    from evaluators import WeightCache
    from spaces import DistillationSettings, StudentPool

    settings = DistillationSettings(**DEFAULTS["distillation"])
    pool = StudentPool(digits_task, WeightCache(cache_dir), settings, seed=0)  # type: ignore[arg-type]
    pool.get("w0.5")
    return cache_dir


def load(url: str, name: str):  # type: ignore[no-untyped-def]
    """The study ``name`` in ``url``, opened read-mostly for checks."""
    import optuna

    from search.storage import StorageSettings, make_storage

    return optuna.load_study(study_name=name, storage=make_storage(url, StorageSettings()))
