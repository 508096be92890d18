"""Sensitivity tables as the report and ``frontier sensitivity`` show them
(``search.report.sensitivity``): the frame, the per-layer ranking and the heatmaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from search.report.sensitivity import (
    COLUMNS,
    cost_text,
    heatmap,
    layer_order,
    sensitivity_frame,
    sensitivity_table,
    write_heatmaps,
)


def _probe(kind: str, layer: str, value: float, distortion: float, drop: float | None) -> dict:
    return {"kind": kind, "layer": layer, "value": value, "distortion": distortion,
            "metric_drop": drop}  # fmt: skip


#: Layers deliberately not in alphabetical order: the model's order is kept.
MEASURED = {
    "model": "teacher",
    "method": "measured",
    "metric": "accuracy",
    "base_metric": 0.98,
    "rows": 256,
    "seconds": 2.5,
    "probes": [
        _probe("bits", "fc2", 2, 0.3, 0.05),
        _probe("bits", "fc2", 4, 0.02, 0.0),
        _probe("bits", "conv1", 2, 0.5, 0.30),
        _probe("bits", "conv1", 4, 0.04, 0.01),
        _probe("prune", "conv1", 0.5, 0.2, 0.02),
        _probe("prune", "fc2", 0.5, 0.0, 0.0),
        _probe("channels", "conv1", 0.25, 0.1, 0.01),
    ],
}
#: A gradient estimate: distortions only.
ESTIMATED = {
    "model": "w0.5",
    "method": "fisher",
    "metric": "accuracy",
    "base_metric": 0.97,
    "rows": 256,
    "seconds": 0.75,
    "probes": [
        _probe("bits", "conv1", 2, 1e-3, None),
        _probe("bits", "fc2", 2, 1e-1, None),
    ],
}
TABLES = {"teacher": MEASURED, "w0.5": ESTIMATED}


def test_the_frame_holds_every_probe_of_every_model() -> None:
    frame = sensitivity_frame(TABLES)
    assert list(frame.columns) == COLUMNS and len(frame) == 9
    assert frame["model"].tolist() == ["teacher"] * 7 + ["w0.5"] * 2
    assert frame["metric_drop"].iloc[-2:].isna().all()  # estimated: no metric drop
    assert layer_order(frame) == ["fc2", "conv1"]  # as the table gives them
    assert list(sensitivity_frame({}).columns) == COLUMNS


def test_heatmaps_colour_by_metric_drop_where_measured_else_log_distortion() -> None:
    frame = sensitivity_frame(TABLES)
    bits = heatmap(frame, "bits")
    assert bits.measured and bits.layers == ["fc2", "conv1"] and bits.values == [2.0, 4.0]
    assert bits.z.ravel().tolist() == pytest.approx([5.0, 0.0, 30.0, 1.0])  # points
    assert bits.text[1][0] == "30.0" and bits.colour_label == "metric drop (points)"
    prune = heatmap(frame, "prune")
    assert prune.values == [0.5] and prune.z[:, 0].tolist() == pytest.approx([0.0, 2.0])
    student = heatmap(frame, "bits", model="w0.5")
    assert not student.measured and student.colour_label == "log10 distortion"
    assert student.layers == ["conv1", "fc2"]
    assert student.z[:, 0].tolist() == pytest.approx([-3.0, -1.0])
    assert heatmap(frame, "prune", model="w0.5").empty  # nothing pruned was probed


def test_the_per_layer_table_puts_the_most_sensitive_layer_first() -> None:
    frame = sensitivity_frame(TABLES)
    table = sensitivity_table(frame)
    assert table["layer"].tolist() == ["conv1", "fc2"]
    conv1 = table.iloc[0]
    assert conv1["bits"] == 2 and conv1["bits_drop"] == pytest.approx(30.0)
    assert conv1["prune"] == 0.5 and conv1["prune_drop"] == pytest.approx(2.0)
    # mean over every probe of the layer (channels too), in points
    assert conv1["mean_drop"] == pytest.approx(100 * (0.30 + 0.01 + 0.02 + 0.01) / 4)
    # estimated: ranked by distortion, no drop
    student = sensitivity_table(frame, "w0.5")
    assert student["layer"].tolist() == ["fc2", "conv1"]
    assert student["mean_drop"].isna().all() and math.isnan(student.iloc[0]["prune"])


def test_cost_text_sums_every_model() -> None:
    assert cost_text(TABLES) == (
        "3.2 s in all (teacher 2.5 s: measured, 256 validation rows; "
        "w0.5 0.8 s: fisher, 256 validation rows)"
    )
    assert cost_text({}) == ""


def test_write_heatmaps_draws_one_png(tmp_path: Path) -> None:
    frame = sensitivity_frame(TABLES)
    path = write_heatmaps(frame, tmp_path / "teacher.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    # a model with one panel probed still draws (the other says "not probed")
    other = write_heatmaps(frame, tmp_path / "student.png", model="w0.5")
    assert other.stat().st_size > 5_000
    assert np.isfinite(heatmap(frame, "bits", "w0.5").z).all()
