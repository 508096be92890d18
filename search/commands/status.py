"""``frontier status``: where a study stands, from its study file or its storage."""

from __future__ import annotations

from pathlib import Path


def status_command(
    study: str | Path | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: Path | None = None,
) -> int:
    """Print trials by state, front size, hypervolume, speed and time left; exit code 0.

    Args:
        study: The study file, results folder or storage file; ``None`` to name the study by
            ``storage`` and ``study_name``.
        storage: An Optuna storage URL (overrides the study file's).
        study_name: The study's name in ``storage``.
        out: The results folder the run was given (``--out``), for a study file.

    Raises:
        StudyFileError: the study cannot be named or opened.
    """
    from search.status import open_for_status, render, summarize

    opened, target = open_for_status(study, storage=storage, study_name=study_name, out=out)
    print(render(summarize(opened, target)))
    return 0
