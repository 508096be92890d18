"""``frontier sensitivity``: the per-layer table and heatmaps, before any search."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import cli_in_process
from tests.studyfile import write_study


def test_sensitivity_prints_the_table_and_writes_csv_and_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "sens"},
        space={"students": ["teacher"], "bits": [2, 4, 8, 32], "prune_max": 0.5},
        sensitivity={"enabled": True, "method": "measured", "rows": 120},
    )
    out = tmp_path / "out"
    done = cli_in_process(capsys, "sensitivity", str(study_file), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "teacher: measured on 120 validation rows" in done.stdout
    assert "2 bits" in done.stdout and "prune 0.5" in done.stdout
    frame = pd.read_csv(out / "sensitivity.csv")
    assert set(frame["model"]) == {"teacher"}
    layers = set(frame["layer"])
    assert {"conv1", "fc2"} <= layers
    two = frame[(frame["kind"] == "bits") & (frame["value"] == 2)]
    eight = frame[(frame["kind"] == "bits") & (frame["value"] == 8)]
    # fewer bits never distort less, layer by layer
    merged = two.merge(eight, on="layer", suffixes=("_2", "_8"))
    assert (merged["distortion_2"] >= merged["distortion_8"]).all()
    png = out / "sensitivity-teacher.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second call reads the cache: the same figures
    again = cli_in_process(capsys, "sensitivity", str(study_file), "--out", str(out))
    assert again.returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "sensitivity.csv"), frame)


def test_an_unknown_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(tmp_path, study={"name": "sens"}, space={"students": ["teacher"]})
    done = cli_in_process(
        capsys, "sensitivity", str(study_file), "--out", str(tmp_path / "o"), "--model", "w9"
    )
    assert done.returncode == 2
    assert "Unknown model(s) ['w9']" in done.stderr
