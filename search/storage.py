"""Study storages: URLs to Optuna storages, heartbeats, and a cross-process study lock.

Storage URLs:

- ``sqlite:///path/study.db`` (the default, one machine): Optuna's RDB storage.
- ``postgresql://user@host:5432/db`` (several machines): Optuna's RDB storage; needs
  ``psycopg2`` (``psycopg2-binary`` is a dependency).
- ``mysql://...`` and any other SQLAlchemy URL Optuna accepts.
- ``journal:PATH`` (a file on a shared file system): Optuna's journal storage.

RDB storages get Optuna's heartbeats: a worker records one every ``heartbeat_interval``
seconds while it holds a trial, and a trial whose heartbeat is older than ``grace_period``
is failed by the next worker that asks for a trial and queued again with the same parameters
(see :mod:`search.leases`). The journal storage has no heartbeats in Optuna; frontier keeps
an equivalent time stamp on the trial itself.

:func:`study_lock` serialises what must not race between processes: creating a study (two
processes creating a new SQLite study at once fail), and claiming the next trial (so that
several workers together stop at exactly ``n_trials``).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from search.retry import RetryWithSameParams
from spaces.files import file_lock

#: Prefix of journal-file storage URLs: ``journal:/shared/frontier/study.log``.
JOURNAL_PREFIX = "journal:"
#: Study user attribute counting how often the study was opened (seeds differ per worker).
OPENS_ATTR = "frontier.opens"


@dataclass(frozen=True)
class StorageSettings:
    """The ``[storage]`` section: how dead workers are noticed.

    Attributes:
        heartbeat_interval: Seconds between two heartbeats of a running trial.
        grace_period: Seconds without a heartbeat after which a running trial counts as
            dead: it is failed and its parameters are queued again.
        max_retry: How many times the parameters of a dead trial are queued again.
    """

    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 3

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "grace_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"'storage.{name}' must be a whole number of seconds >= 1. "
                    f"Got {value!r} instead."
                )
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"'storage.grace_period' must be longer than 'storage.heartbeat_interval' "
                f"({self.heartbeat_interval}s). Got {self.grace_period} instead."
            )
        if isinstance(self.max_retry, bool) or not isinstance(self.max_retry, int):
            raise ValueError(f"'storage.max_retry' must be an int. Got {self.max_retry!r} instead.")
        if self.max_retry < 0:
            raise ValueError(f"'storage.max_retry' must be >= 0. Got {self.max_retry} instead.")


def storage_kind(url: str) -> str:
    """``"journal"``, ``"sqlite"``, ``"postgresql"``, ``"mysql"`` or ``"rdb"`` (other)."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("sqlite", "postgresql", "postgres", "mysql"):
        return "postgresql" if scheme == "postgres" else scheme
    return "rdb"


def normalise_url(url: str) -> str:
    """Name the PostgreSQL driver frontier installs (``psycopg2``) when a URL names none.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not a dependency.
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for in-memory databases)."""
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def journal_path(url: str) -> Path:
    """The log file of a ``journal:PATH`` URL."""
    return Path(url[len(JOURNAL_PREFIX) :]).expanduser()


def make_storage(url: str, settings: StorageSettings) -> BaseStorage:
    """An Optuna storage for ``url``, with heartbeats where the storage has them."""
    kind = storage_kind(url)
    if kind == "journal":
        path = journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, object] = {}
    if kind == "postgresql":
        engine_kwargs["pool_pre_ping"] = True
    if kind == "sqlite":
        # wait for a busy database instead of failing at once (several processes, one file)
        engine_kwargs["connect_args"] = {"timeout": 60}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            normalise_url(url),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=RetryWithSameParams(
                settings.max_retry, "worker lost: no heartbeat for the grace period"
            ),
        )
    if kind == "sqlite":
        # WAL journal: readers (`frontier status`, other workers) do not block the writer,
        # and a commit needs no fsync (6x faster tells here); a killed process loses nothing
        # committed, only a power cut may drop the last commits
        sa.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections made before the listener get the pragmas too
    return storage


def _sqlite_pragmas(dbapi_connection: object, _: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks."""
    digest = hashlib.sha256(f"frontier:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` shared by every process using ``url``.

    SQLite and journal files lock a file next to the database (``fcntl``, so the lock is
    released when a process dies); PostgreSQL takes a session advisory lock (released when
    the connection closes, so a killed worker cannot leave it held). Other databases get no
    lock: several workers may then overshoot ``n_trials`` by a trial or two.
    """
    kind = storage_kind(url)
    if kind in ("sqlite", "journal"):
        db = sqlite_path(url) if kind == "sqlite" else journal_path(url)
        if db is None:
            yield
            return
        # not "<file>.lock": Optuna's journal file lock is a symlink of that name
        with file_lock(db.with_name(db.name + ".frontier-lock")):
            yield
        return
    if kind == "postgresql":
        engine = _lock_engine(url)
        with engine.connect() as conn:
            key = _lock_key(name)
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    yield


_ENGINES: dict[str, sa.engine.Engine] = {}


def _lock_engine(url: str) -> sa.engine.Engine:
    if url not in _ENGINES:
        # no pool: a connection (and the advisory lock on it) lives exactly as long as `with`
        _ENGINES[url] = sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool)
    return _ENGINES[url]


def open_shared_study(
    name: str, url: str, settings: StorageSettings, directions: Sequence[str]
) -> tuple[optuna.Study, int]:
    """Create the study once, or load it; returns it and how often it was opened before.

    Creation runs under :func:`study_lock`, so processes starting together on a new study
    (one machine or many) neither race nor create it twice.
    """
    with study_lock(url, "create"):
        study = optuna.create_study(
            study_name=name,
            storage=make_storage(url, settings),
            directions=[optuna.study.StudyDirection[d.upper()] for d in directions],
            load_if_exists=True,
        )
        opens = int(study.user_attrs.get(OPENS_ATTR, 0))
        study.set_user_attr(OPENS_ATTR, opens + 1)
    register(study, url, settings)
    return study, opens


_STUDIES: weakref.WeakKeyDictionary[optuna.Study, tuple[str, StorageSettings]] = (
    weakref.WeakKeyDictionary()
)


def register(study: optuna.Study, url: str, settings: StorageSettings) -> None:
    """Remember the storage URL and settings of a study opened by frontier."""
    _STUDIES[study] = (url, settings)


def storage_of(study: optuna.Study) -> tuple[str | None, StorageSettings]:
    """The URL and settings a study was opened with (``None`` for studies frontier did not open)."""
    return _STUDIES.get(study, (None, StorageSettings()))
