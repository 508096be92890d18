"""Two small real studies (digits-cnn) in one SQLite storage, built once per test session
(about 10 s): tests that use them are marked slow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from search.driver import open_study, run_study
from search.final import final_figures
from search.objective import StudyContext
from search.results import write_outputs
from search.spec import load_spec
from search.stored import StoredStudy
from tests.studyfile import write_study


@dataclass(frozen=True)
class SmallStudies:
    """``joint`` (TPE over students, bits, pruning) and ``quant`` (random, bits only).

    ``joint`` is finished as ``frontier run`` finishes a study (final side-by-side latency and
    test figures of the front and the baselines, :mod:`search.final`); ``quant`` is left
    without them, as an interrupted run leaves a study, so that reports compute them.
    """

    root: Path  # the shared results folder: study.db and cache/
    joint: Path  # study files
    quant: Path

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.root / 'study.db'}"


def small_study_file(
    folder: Path, name: str, *, n: int, sampler: str, students: list[str], prune_max: float
) -> Path:
    """A small digits-cnn study file with a size budget (60KB) and quick distillation."""
    return write_study(
        folder,
        study={"name": name, "n_trials": n, "sampler": sampler},
        space={"students": students, "prune_max": prune_max},
        distillation={"epochs": 2},
        budget={"max_size": "60KB"},
    )


@pytest.fixture(scope="session")
def small_studies(tmp_path_factory: pytest.TempPathFactory) -> SmallStudies:
    folder = tmp_path_factory.mktemp("studies")
    root = folder / "results"
    joint = small_study_file(
        folder, "joint", n=10, sampler="tpe", students=["teacher", "w0.5"], prune_max=0.8
    )
    quant = small_study_file(
        folder, "quant", n=8, sampler="random", students=["teacher"], prune_max=0.0
    )
    for path in (joint, quant):
        spec = load_spec(path)
        ctx = StudyContext(spec, root)
        url = f"sqlite:///{root / 'study.db'}"
        study = open_study(spec, url, results_dir=root)
        run_study(ctx, study, n_trials=spec.study.n_trials)
        if spec.study.name == "joint":
            final_figures(StoredStudy(study, spec, root, url, _context=ctx))
        write_outputs(study, root / spec.study.name)
    return SmallStudies(root, joint, quant)
