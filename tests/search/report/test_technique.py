"""The report's "which technique" section, warm-start marks and sensitivity, on recorded
studies (no model is trained): a study of quantization-only trials, some of them warm starts,
that measured its teacher's sensitivity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from search.families import STUDENT_LAYERS_ATTR
from search.report import build_report, front_table, write_report
from search.report.data import StudyReport
from search.report.plot_data import accuracy_plot, family_plot
from search.report.tables import family_table, knee_techniques, sensitivity_rows
from search.spec import load_spec
from search.stored import StoredStudy
from search.study_attrs import SENSITIVITY_ATTR
from spaces import CompressionConfig
from tests.search._small_studies import small_study_file

LAYERS = ["conv1", "conv2", "fc1", "fc2"]
WARM = "sensitivity:teacher:1/2"

#: (accuracy, size, latency, baseline, bits, warm start) per trial, all feasible. The front
#: (accuracy, size, latency) is 1, 2, 3 and 4; the teacher (0) is dominated by 4 (float16).
QUANT = [
    (0.990, 100_000, 2.0, "teacher", {}, ""),
    (0.988, 25_000, 1.0, "uniform-int8", dict.fromkeys(LAYERS, 8), ""),
    (0.985, 15_000, 0.9, "", {"fc1": 4, "conv1": 8}, WARM),
    (0.950, 8_000, 0.8, "", {"fc1": 2, "conv1": 4}, ""),
    (0.990, 60_000, 1.9, "", {"fc1": 16}, ""),
]

#: The teacher's measured sensitivity: fc1 matters most, then conv1; conv2 barely.
DROPS = {"conv1": (0.20, 0.02, 0.0), "conv2": (0.01, 0.0, 0.0), "fc1": (0.40, 0.10, 0.005)}
TABLE = {
    "model": "teacher",
    "method": "measured",
    "metric": "accuracy",
    "base_metric": 0.99,
    "rows": 512,
    "seconds": 3.25,
    "probes": [
        {"kind": "bits", "layer": layer, "value": b, "distortion": d / 10, "metric_drop": d}
        for layer, drops in DROPS.items()
        for b, d in zip((2, 4, 8), drops, strict=True)
    ]
    + [
        {"kind": "prune", "layer": layer, "value": 0.5, "distortion": d, "metric_drop": d / 2}
        for layer, (d, _, _) in DROPS.items()
    ],
}


def _recorded(
    tmp_path: Path, name: str, trials: list[tuple[Any, ...]], attrs: dict[str, Any]
) -> StudyReport:
    study_file = small_study_file(
        tmp_path, name, n=5, sampler="random", students=["teacher"], prune_max=0.5
    )
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize", "minimize"])
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for acc, size, latency, baseline, bits, warm in trials:
        user: dict[str, object] = {"accuracy": acc, "size_bytes": size, "latency_ms": latency}
        user |= {"baseline": baseline, "config": CompressionConfig(bits=bits).to_json()}
        if warm:
            user["warm_start"] = warm
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, size, latency], user_attrs=user, constraints={"size": -1.0}
            )
        )
    stored = StoredStudy(study, load_spec(study_file), tmp_path, "sqlite:///:memory:")
    return build_report(stored, remeasure=False)


@pytest.fixture
def quant(tmp_path: Path) -> StudyReport:
    attrs = {SENSITIVITY_ATTR: {"teacher": TABLE}, STUDENT_LAYERS_ATTR: {"teacher": LAYERS}}
    return _recorded(tmp_path, "quant", QUANT, attrs)


def test_a_quantization_only_study_shows_only_that_family(quant: StudyReport) -> None:
    assert sorted(quant.front["trial"]) == [1, 2, 3, 4]
    # the other families are left out (no trial of their own), joint is always shown
    assert quant.families["family"].tolist() == ["quantization only", "joint"]
    assert list(quant.family_fronts) == ["quantization only", "joint"]
    q, joint = quant.families.set_index("family").loc[["quantization only", "joint"]].iloc
    assert q["hypervolume"] == pytest.approx(joint["hypervolume"]) and q["front"] == 4
    assert q["trials"] == 4 and joint["trials"] == 5  # joint counts the teacher too
    # within the study's 5-point drop budget: trial 3 (95.0%) is the smallest, 2 the fastest
    # after 3 (0.8 ms)
    assert q["best_size_trial"] == 3 and q["best_latency_trial"] == 3
    table = family_table(quant)
    assert table["family"].tolist() == ["quantization only", "joint"]
    assert table["best size (B)"].tolist() == ["8,000 (#3)"] * 2
    assert table["smaller"].tolist() == ["12.5x"] * 2
    plot = family_plot(quant)
    assert list(plot.fronts) == ["quantization only", "joint"]
    assert plot.fronts["joint"]["size_bytes"].is_monotonic_increasing
    assert plot.teacher["trial"].tolist() == [0]


def test_the_markdown_names_the_families_and_the_knees_techniques(
    quant: StudyReport, tmp_path: Path
) -> None:
    files = write_report([quant], tmp_path / "out")
    md = files.markdown.read_text()
    section = md.split("### Which technique", 1)[1].split("###", 1)[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")]
    assert rows == ["family", "---", "quantization only", "joint"]
    assert "Left out, no trial of their own: pruning only, student only." in section
    assert "](report-quant-families.png)" in section
    assert knee_techniques(quant) == "quantization"
    assert re.search(r"Trial \*\*\d+\*\* .*Techniques: quantization\.", md)
    # every front point names its techniques: 16-bit float storage counts as quantization
    front = front_table(quant).set_index("trial")
    assert set(front.loc[[1, 2, 3, 4], "techniques"]) == {"quantization"}
    assert front.loc[0, "techniques"] == "none (the teacher)"


def test_front_points_from_warm_starts_are_marked(quant: StudyReport, tmp_path: Path) -> None:
    table = front_table(quant).set_index("trial")
    assert table.loc[2, "warm start"] == WARM and table.loc[3, "warm start"] == ""
    assert accuracy_plot(quant, "size_bytes").warm["trial"].tolist() == [2]
    files = write_report([quant], tmp_path / "out", png=False)
    md = files.markdown.read_text()
    assert "1 of the 4 front points came from the 1 sensitivity warm starts" in md
    html = files.html.read_text()
    assert "front point from a warm start" in html and WARM in html


def test_the_teachers_sensitivity_is_shown_most_sensitive_layer_first(
    quant: StudyReport, tmp_path: Path
) -> None:
    assert quant.sensitivity_model == "teacher" and len(quant.sensitivity) == 12
    rows = sensitivity_rows(quant)
    assert rows["layer"].tolist() == ["fc1", "conv1", "conv2"]
    assert rows.iloc[0]["lowest bits"] == "2b" and rows.iloc[0]["drop at them (points)"] == "40.00"
    files = write_report([quant], tmp_path / "out")
    md = files.markdown.read_text()
    section = md.split("### Per-layer sensitivity (teacher)", 1)[1].split("###", 1)[0]
    assert "3.2 s in all (teacher 3.2 s: measured, 512 validation rows)" in section
    assert section.index("| fc1 |") < section.index("| conv1 |") < section.index("| conv2 |")
    png = tmp_path / "out" / "report-quant-sensitivity.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and f"]({png.name})" in section
    # six plots, the families' fronts and the sensitivity heatmaps
    assert files.html.read_text().count("Plotly.newPlot") == 8
    assert "Per-layer sensitivity (teacher)" in files.html.read_text()


def test_a_trial_counts_only_the_layers_its_model_has(tmp_path: Path) -> None:
    # a shallower student drew 4 bits for fc2, which it does not have: a student alone
    trials = [
        (0.99, 100_000, 2.0, "teacher", {}, ""),
        (0.97, 30_000, 1.0, "", {"fc2": 4}, ""),
    ]
    layers = {"teacher": LAYERS, "w0.5-f1": ["conv1", "conv2", "fc1"]}
    report = _recorded(tmp_path, "shallow", trials, {STUDENT_LAYERS_ATTR: layers})
    assert report.trials["techniques"].tolist() == ["none (the teacher)", "quantization"]
    # the same configuration on the student that lacks fc2
    study = report.stored.study
    study.set_user_attr(STUDENT_LAYERS_ATTR, layers)
    config = CompressionConfig(student="w0.5-f1", bits={"fc2": 4}).to_json()
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.96, 20_000, 0.5],
            user_attrs={"accuracy": 0.96, "size_bytes": 20_000, "latency_ms": 0.5,
                        "baseline": "", "config": config},
            constraints={"size": -1.0},
        )
    )  # fmt: skip
    again = build_report(report.stored, remeasure=False)
    assert again.trials["techniques"].tolist()[-1] == "student"
    assert "student only" in again.families["family"].tolist()
