"""Open finished studies from what a user types: a study file, a storage file, or a URL.

``report``, ``select`` and ``export`` read studies that ``frontier run`` (or the Ray backend,
which shares the Optuna storage) wrote. A study is named by

- its study file (``.toml``): the storage and results folder are found as ``run`` finds them;
- its results folder (``studies/results/<study>``, where ``run`` wrote ``study.db``);
- a storage file: SQLite (``.db``, ``.sqlite``, ``.sqlite3``) or an Optuna journal file
  (``.log``, ``.jsonl``, ``.journal``);
- ``--storage URL`` (any Optuna storage URL: ``sqlite:///...``, ``postgresql://...``, or
  ``journal:/path/to/file.log``) and the study's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from search.environment import RESULTS_ATTR, stored_spec
from search.spec import StudyFileError, StudySpec, load_spec

if TYPE_CHECKING:
    from search.objective import StudyContext

_SQLITE = (".db", ".sqlite", ".sqlite3")
_JOURNAL = (".log", ".jsonl", ".journal")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL.

    ``journal:PATH`` (also ``journal:///abs/path``) opens an Optuna journal file; a bare
    ``postgresql://`` names the ``psycopg2`` driver (SQLAlchemy 2.1 would read it as psycopg 3).
    """
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = url.removeprefix("journal:")
            path = "/" + path.lstrip("/") if path.startswith("//") else path
            if not Path(path).exists():
                raise StudyFileError(f"Journal file {path!r} does not exist.")
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        if url.startswith("sqlite:///"):
            # reading must not create an empty database where the user mistyped a path
            path = url.removeprefix("sqlite:///").split("?", 1)[0]
            if path and not path.startswith(":memory:") and not Path(path).exists():
                raise StudyFileError(
                    f"SQLite file {path!r} does not exist; run the study first, or pass its "
                    "results folder with --out (or its storage with --storage)."
                )
        for bare in ("postgresql://", "postgres://"):
            if url.startswith(bare):
                url = "postgresql+psycopg2://" + url.removeprefix(bare)
        return optuna.storages.get_storage(url)
    except StudyFileError:
        raise
    except Exception as exc:  # bad URL, missing driver, refused connection
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudyFileError(f"Cannot open storage {url!r}: {first}") from None


@dataclass
class StoredStudy:
    """A study read back from its storage, with what is needed to rebuild its candidates.

    Attributes:
        study: The Optuna study.
        spec: Its settings (from the study file, else as recorded in the study), or ``None``
            for a study recorded by an older release and opened without its file.
        results_dir: The study's results folder (its weight cache lives in ``cache/``).
        storage_url: Where the study is stored, as the user named it.
    """

    study: optuna.Study
    spec: StudySpec | None
    results_dir: Path
    storage_url: str
    _context: StudyContext | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.study.study_name

    def context(self) -> StudyContext:
        """The study's scoring context (teacher and students from the results cache).

        Raises:
            StudyFileError: the study's settings are unknown (pass its study file).
        """
        if self.spec is None:
            raise StudyFileError(
                f"Study {self.name!r} does not record its settings (made by an older "
                "release); pass its study file (.toml) instead."
            )
        if self._context is None:
            from search.objective import StudyContext

            self._context = StudyContext(self.spec, self.results_dir)
        return self._context


def _load(storage_url: str, name: str | None) -> optuna.Study:
    storage = open_storage(storage_url)
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if name is None:
        if len(names) != 1:
            raise StudyFileError(
                f"Storage {storage_url!r} holds {len(names)} studies {sorted(names)}; "
                "name one with --study NAME."
            )
        name = names[0]
    if name not in names:
        raise StudyFileError(
            f"No study {name!r} in {storage_url!r}; it holds {sorted(names)}. Run the study "
            "first (frontier run STUDY.toml) or name another with --study."
        )
    return optuna.load_study(study_name=name, storage=storage)


def _results_dir(study: optuna.Study, fallback: Path) -> Path:
    recorded = study.user_attrs.get(RESULTS_ATTR)
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return Path(recorded)
    return fallback


def open_stored(
    ref: str | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: Path | None = None,
) -> StoredStudy:
    """Open one finished study.

    Args:
        ref: A study file, a results folder, a storage file, or (with ``storage``) a study
            name.
        storage: An Optuna storage URL.
        study_name: The study's name in ``storage`` (needed when it holds several).
        out: The results folder, when the run used ``--out``.

    Raises:
        StudyFileError: nothing matches; the message says what to pass instead.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(ref) if ref is not None else None
    if path is not None and path.suffix == ".toml":
        from search.driver import default_results_dir, default_storage

        spec = load_spec(path)
        results_dir = (out or default_results_dir(spec, path)).resolve()
        url = storage or spec.study.storage or default_storage(results_dir)
        study = _load(url, study_name or spec.study.name)
        return StoredStudy(study, spec, results_dir, url)
    if path is not None and path.is_dir() and storage is None:
        return _open_folder(path, study_name=study_name, out=out)
    if path is not None and path.suffix in _SQLITE + _JOURNAL and storage is None:
        if not path.exists():
            raise StudyFileError(f"Storage file {str(path)!r} does not exist.")
        kind = "sqlite:///" if path.suffix in _SQLITE else "journal:"
        url = f"{kind}{path.resolve()}"
        study = _load(url, study_name)
        results_dir = (out or path.resolve().parent).resolve()
        return StoredStudy(study, stored_spec(study), results_dir, url)
    if storage is None:
        raise StudyFileError(
            f"{ref!r} is not a study file (.toml), a results folder or a storage file "
            f"({', '.join(_SQLITE + _JOURNAL)}); or pass --storage URL --study NAME."
        )
    study = _load(storage, study_name or ref)
    fallback = out or Path("studies") / "results" / study.study_name
    results_dir = (out or _results_dir(study, fallback)).resolve()
    return StoredStudy(study, stored_spec(study), results_dir, storage)


def _open_folder(folder: Path, *, study_name: str | None, out: Path | None) -> StoredStudy:
    """A study from its results folder: the storage file in it (``study.db`` as ``run``
    writes it), or the one its parent holds when ``run`` was given a shared ``--out``."""
    folder = folder.resolve()
    files = sorted(p for p in folder.iterdir() if p.suffix in _SQLITE + _JOURNAL)
    preferred = [p for p in files if p.name == "study.db"] or files
    shared = folder.parent / "study.db"
    if len(preferred) == 1:
        storage_file = preferred[0]
    elif not files and shared.is_file():
        storage_file = shared
        study_name = study_name or folder.name  # ``<out>/<study name>``: write_outputs' folder
    else:
        found = ", ".join(p.name for p in files) or "none"
        raise StudyFileError(
            f"Results folder {str(folder)!r} holds no single storage file (study.db; found: "
            f"{found}); pass the study file (.toml) or the storage file instead."
        )
    kind = "sqlite:///" if storage_file.suffix in _SQLITE else "journal:"
    url = f"{kind}{storage_file}"
    if study_name is None:  # a storage holding several studies: the folder's own name
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(url), False)]
        study_name = folder.name if folder.name in names and len(names) > 1 else None
    study = _load(url, study_name)
    return StoredStudy(study, stored_spec(study), (out or storage_file.parent).resolve(), url)


def open_many(
    refs: Sequence[str], *, storage: str | None, names: Sequence[str], out: Path | None
) -> list[StoredStudy]:
    """Open every study named on a command line (files, names in ``storage``, ``--study``).

    ``out`` (the results folder a run was given) applies to every study named.
    """
    opened = [open_stored(r, storage=storage, out=out) for r in refs]
    if names and storage is None:
        raise StudyFileError("--study NAME needs --storage URL.")
    opened += [open_stored(storage=storage, study_name=n, out=out) for n in names]
    if not opened and storage is not None:
        opened.append(open_stored(storage=storage, out=out))
    if not opened:
        raise StudyFileError("Name a study: a study file, a storage file, or --storage URL.")
    return opened
