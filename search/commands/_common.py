"""What the commands share: exit codes and opening the one study a command reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from search.spec import StudyFileError, StudySpec, load_spec

if TYPE_CHECKING:
    from search.stored import StoredStudy

#: ``select`` or ``export`` found no front point within the budget.
EXIT_NOTHING_SELECTED = 1
#: A bad study file, flag or budget (one line on stderr).
EXIT_USAGE = 2
#: Ctrl-C; everything finished before it is saved.
EXIT_INTERRUPTED = 130


def open_one(
    study: str | None, *, storage: str | None, names: Sequence[str], out: Path | None
) -> StoredStudy:
    """The one study named by a study file, a storage file, or ``storage`` and ``names``.

    Raises:
        StudyFileError: none or several studies are named, or the study cannot be opened.
    """
    from search.stored import open_many

    refs = [study] if study else []
    opened = open_many(refs, storage=storage, names=names, out=out)
    if len(opened) != 1:
        raise StudyFileError("Name exactly one study.")
    return opened[0]


def locate_study(
    study_file: str | Path, *, out: Path | None, storage: str | None
) -> tuple[StudySpec, Path, str]:
    """A study file's settings, its results folder (created) and its storage URL."""
    spec = load_spec(study_file)
    from search.driver import default_results_dir, default_storage

    results_dir = out.resolve() if out is not None else default_results_dir(spec, study_file)
    url = storage or spec.study.storage or default_storage(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    return spec, results_dir, url
