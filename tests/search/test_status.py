"""``frontier status`` and the normalised hypervolume."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from search.driver import open_study, run_study
from search.objective import StudyContext
from search.quality import REFERENCE, front_hypervolume
from search.results import trials_frame
from search.spec import load_spec
from tests.conftest import run_cli
from tests.search._cluster import warm_cache
from tests.studyfile import write_study


def _frame(rows: list[tuple[str, float, float, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "baseline": b,
                "state": "COMPLETE",
                "accuracy": a,
                "size_bytes": s,
                "latency_ms": lat,
                "front": f,
            }
            for b, a, s, lat, f in rows
        ]
    )


def test_hypervolume_is_normalised_to_the_teacher_with_a_fixed_reference() -> None:
    assert REFERENCE == {"accuracy": 0.9, "size_bytes": 1.0, "latency_ms": 2.0, "bops": 1.0}
    df = _frame(
        [
            ("teacher", 0.98, 1000.0, 2.0, True),  # on the reference's size: adds nothing
            ("", 0.98, 100.0, 2.0, True),  # (1.0, 0.1, 1.0) -> 0.1 * 0.9 * 1.0
            ("", 0.95, 500.0, 2.0, False),  # not on the front: ignored
        ]
    )
    assert front_hypervolume(df) == pytest.approx(0.09)
    # the same study measured on a twice slower machine, in grams: the same number
    scaled = df.assign(latency_ms=df["latency_ms"] * 2, size_bytes=df["size_bytes"] * 1e3)
    assert front_hypervolume(scaled) == pytest.approx(0.09)
    assert pd.isna(front_hypervolume(df[df["baseline"] != "teacher"]))


@pytest.mark.slow
def test_status_of_a_study_from_its_file_or_its_storage(tmp_path: Path, warm_weights: Path) -> None:
    study_file = write_study(tmp_path, study={"name": "st", "n_trials": 5})
    out = tmp_path / "results" / "st"  # the default results folder of the study file
    warm_cache(warm_weights, out)
    spec = load_spec(study_file)
    url = f"sqlite:///{out / 'study.db'}"
    study = open_study(spec, url)
    run_study(StudyContext(spec, out), study, n_trials=5)
    df = trials_frame(study)

    by_file = run_cli("status", str(study_file))
    assert by_file.returncode == 0, by_file.stderr
    lines = by_file.stdout.splitlines()
    assert "study: st" in lines
    assert "trials: 5 of 5 counted (5 complete)" in lines
    assert f"feasible: {int(df['feasible'].sum())}" in lines
    assert f"front: {int(df['front'].sum())} points" in lines
    assert any(ln.startswith(f"hypervolume: {front_hypervolume(df):.4f} ") for ln in lines)
    assert any(ln.startswith("speed: ") and "trials/min" in ln for ln in lines)
    assert "time left: none (the study holds its n_trials)" in lines

    by_storage = run_cli("status", "--storage", url, "--study", "st")
    assert by_storage.returncode == 0, by_storage.stderr
    assert by_storage.stdout.splitlines()[:5] == lines[:5]

    missing = run_cli("status", "--storage", url, "--study", "nope")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith(f"frontier: error: No study 'nope' in {url!r}")

    by_db = run_cli("status", str(study_file.parent / "results" / "st" / "study.db"))
    assert by_db.returncode == 0, by_db.stderr
    assert by_db.stdout.splitlines()[:5] == lines[:5]


def test_hypervolume_over_the_study_objectives_normalises_bops_to_the_teacher() -> None:
    df = _frame(
        [
            ("teacher", 0.98, 1000.0, 2.0, True),
            ("", 0.98, 100.0, 2.0, True),
        ]
    ).assign(bops=[1e6, 2e5])
    # (1 - 0.9) * (1 - 0.1) * (2 - 1) * (1 - 0.2): BOPs 1/5 of the teacher's, reference 1.0
    four = ("accuracy", "size_bytes", "latency_ms", "bops")
    assert front_hypervolume(df, four) == pytest.approx(0.1 * 0.9 * 1.0 * 0.8)
    assert front_hypervolume(df, ("accuracy", "bops")) == pytest.approx(0.1 * 0.8)
    assert front_hypervolume(df) == pytest.approx(0.09)  # the default three
