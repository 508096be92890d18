"""The report's data layer (``search.report.data``, ``.tables``, ``.plot_data``) on a study
whose front and knee are known, built from recorded trials alone (no model is trained)."""

from __future__ import annotations

import math
from pathlib import Path

import grimp
import numpy as np
import optuna
import pandas as pd
import pytest

from search.report import build_report, front_table, knee_trial, write_report
from search.report.data import StudyReport
from search.report.figures import accuracy_vs
from search.report.plot_data import accuracy_plot, objectives_plot, parallel_plot
from search.report.tables import bits_label, fmt_interval, fmt_pct, knee_row
from search.spec import load_spec
from search.stored import StoredStudy
from spaces import CompressionConfig
from tests.search._small_studies import small_study_file

#: (accuracy, size in bytes, latency in ms, feasible, baseline, test accuracy) per trial.
#: Trials 1, 2 and 3 are the front; 4 is dominated by 2; the teacher (0) is over the size
#: budget. On a log scale, 2 is by far the nearest to the ideal point: the knee.
TRIALS = [
    (0.990, 400_000, 4.0, False, "teacher", 0.985),
    (0.985, 100_000, 2.0, True, "", 0.982),
    (0.980, 10_000, 1.0, True, "", 0.975),
    (0.800, 8_000, 0.9, True, "", None),
    (0.970, 20_000, 1.5, True, "", None),
]
FRONT = [1, 2, 3]  # most accurate first
KNEE = 2


@pytest.fixture
def report(tmp_path: Path) -> StudyReport:
    study_file = small_study_file(
        tmp_path, "known", n=5, sampler="random", students=["teacher"], prune_max=0.5
    )
    study = optuna.create_study(study_name="known", directions=["maximize", "minimize", "minimize"])
    for acc, size, latency, feasible, baseline, test in TRIALS:
        attrs: dict[str, object] = {"accuracy": acc, "size_bytes": size, "latency_ms": latency}
        attrs["baseline"] = baseline
        compressed = CompressionConfig(bits={"fc1": 4}, prune={"fc1": 0.5})
        attrs["config"] = (CompressionConfig() if baseline else compressed).to_json()
        if test is not None:
            attrs |= {"test_accuracy": test, "test_accuracy_low": test - 0.01}
            attrs["test_accuracy_high"] = min(1.0, test + 0.01)
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, size, latency],
                user_attrs=attrs,
                constraints={"size": -1.0 if feasible else 1.0},
            )
        )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    stored = StoredStudy(study, load_spec(study_file), tmp_path, "sqlite:///:memory:")
    return build_report(stored, remeasure=False)


def test_the_report_finds_the_known_front_knee_and_teacher(report: StudyReport) -> None:
    assert report.front["trial"].tolist() == FRONT
    assert report.knee_trial == KNEE
    assert report.front.loc[report.front["knee"], "trial"].tolist() == [KNEE]
    assert report.teacher is not None and report.teacher["trial"] == 0
    assert report.counts() == {
        "trials": 6,
        "complete": 5,
        "feasible": 4,
        "failed": 1,
        "pruned": 0,
        "front": 3,
    }
    teacher_accuracy = TRIALS[0][0]
    drop = report.settings["budget"]["max_accuracy_drop"]
    assert report.accuracy_floor == pytest.approx(teacher_accuracy - drop / 100)
    # hypervolume after each trial: never falls, and something once the front has points
    assert len(report.hv) == 6 and (np.diff(report.hv["hypervolume"]) >= 0).all()
    assert report.hypervolume > 0
    assert report.policies["bits"].loc[KNEE, "fc1"] == 4.0
    # every compressed trial quantizes and prunes (read from its stored config: these
    # recorded trials have no parameters): no family but joint has trials of its own
    assert report.families["family"].tolist() == ["joint"]
    assert report.front.set_index("trial").loc[KNEE, "techniques"] == "quantization + pruning"
    assert report.teacher["techniques"] == "none (the teacher)"
    assert (report.trials["warm_start"] == "").all()  # a study from before warm starts


def test_knee_trial_reads_the_front_it_is_given() -> None:
    rows = [(n, *TRIALS[n][:3]) for n in FRONT]
    front = pd.DataFrame(rows, columns=["trial", "accuracy", "size_bytes", "latency_ms"])
    assert knee_trial(front, ["accuracy", "size_bytes", "latency_ms"]) == KNEE
    # on accuracy alone the most accurate point is the ideal point
    assert knee_trial(front, ["accuracy"]) == FRONT[0]
    assert knee_trial(front.iloc[:0], ["accuracy", "size_bytes"]) is None


def test_the_front_table_lists_the_front_then_the_baselines_off_it(report: StudyReport) -> None:
    table = front_table(report)
    assert table["trial"].tolist() == [*FRONT, 0]
    marks = dict(zip(table["trial"], table["mark"], strict=True))
    assert marks[KNEE] == "knee"
    assert marks[0] == "teacher (baseline, not on the front, over budget)"
    teacher_size, knee_size = TRIALS[0][1], TRIALS[KNEE][1]
    row = table[table["trial"] == KNEE].iloc[0]
    assert row["smaller"] == f"{teacher_size / knee_size:.1f}x"
    assert row["test acc [95% CI]"].startswith(fmt_pct(TRIALS[KNEE][5]))
    assert "BOPs" not in table.columns  # no trial measured BOPs
    k = knee_row(report)
    assert k is not None and k["trial"] == KNEE


def test_accuracy_plot_data_groups_every_complete_trial(report: StudyReport) -> None:
    p = accuracy_plot(report, "size_bytes")
    assert p.log_x and p.short == "size"
    assert sorted(p.feasible["trial"]) == [1, 2, 3, 4] and p.infeasible["trial"].tolist() == [0]
    # the front by size, with the best accuracy up to each size (the staircase)
    by_size = sorted(FRONT, key=lambda n: TRIALS[n][1])
    assert p.front["trial"].tolist() == by_size
    assert p.front["best"].tolist() == list(np.maximum.accumulate([TRIALS[n][0] for n in by_size]))
    assert sorted(p.tested["trial"]) == [n for n in FRONT if TRIALS[n][5] is not None]
    assert (p.tested["below"] >= 0).all() and (p.tested["above"] >= 0).all()
    assert p.knee["trial"].tolist() == [KNEE] and p.baselines["trial"].tolist() == [0]
    assert p.budget == report.budget("max_size_bytes") is not None
    lo, hi = p.x_range
    sizes = [t[1] for t in TRIALS]
    assert lo < min(sizes) and hi > max([*sizes, p.budget])
    top = 100 * max(t[0] for t in TRIALS)
    # the accuracy axis shows the best trial and the 15 points below it
    assert p.y_range is not None and p.y_range[0] == pytest.approx(top - 15)
    assert p.y_range[1] > top
    assert p.accuracy_floor == report.accuracy_floor


def test_objectives_and_parallel_plot_data(report: StudyReport) -> None:
    p = objectives_plot(report)
    lo, hi = p.colour_range
    feasible = [100 * t[0] for t in TRIALS if t[3]]
    assert min(feasible) <= lo < hi == max(feasible)
    assert p.latency_budget is None and p.size_budget == report.budget("max_size_bytes")
    par = parallel_plot(report)
    assert par.group.tolist() == [0, 2, 2, 2, 1]  # over budget, front x3, dominated
    labels = [d["label"] for d in par.dimensions]
    assert labels == ["val accuracy % (objective)", "size (bytes) (objective)",
                      "latency (ms) (objective)"]  # fmt: skip


def test_plotly_figure_draws_the_data(report: StudyReport) -> None:
    fig = accuracy_vs(report, "size_bytes")
    traces = {t.name: t for t in fig.data}
    front = traces["Pareto front (validation)"]
    p = accuracy_plot(report, "size_bytes")
    assert list(front.x) == p.front["size_bytes"].tolist()
    assert list(front.y) == pytest.approx([100 * a for a in p.front["accuracy"]])
    assert list(traces["suggested knee"].x) == [TRIALS[KNEE][1]]
    assert f"trial {KNEE}<br>" in traces["suggested knee"].hovertext[0]


def test_a_report_of_the_known_study_writes_every_file(report: StudyReport, tmp_path: Path) -> None:
    files = write_report([report], tmp_path / "out")
    # six plots, and the technique families' fronts; no sensitivity measured, so no heatmap
    assert files.html.read_text().count("Plotly.newPlot") == 7
    md = files.markdown.read_text()
    assert f"Trial **{KNEE}**" in md and "### Per-layer policies of the front" in md
    assert "### Which technique" in md and "Per-layer sensitivity" not in md
    assert len(files.pngs) == 6 and all(p.read_bytes()[:4] == b"\x89PNG" for p in files.pngs)
    assert files.pngs[-1].name == "report-known-families.png"


def test_formatting() -> None:
    assert fmt_pct(0.97125) == "97.12%" and fmt_pct(math.nan) == "-" and fmt_pct("x") == "-"
    assert fmt_interval(0.961, 0.98) == "[96.1, 98.0]" and fmt_interval(math.nan, 1) == ""
    assert [bits_label(v) for v in (32.0, 16.0, 4.0, math.nan)] == ["fp32", "fp16", "4b", ""]
    assert bits_label(4.0, unit="") == "4"


def test_the_data_modules_import_no_plotting_library_and_no_renderer() -> None:
    graph = grimp.build_graph("search", include_external_packages=True)
    renderers = {f"search.report.{m}" for m in ("figures", "html", "markdown", "png", "write")}
    for module in ("search.report.data", "search.report.tables", "search.report.plot_data"):
        imported = graph.find_modules_directly_imported_by(module)
        assert not {m for m in imported if m.split(".")[0] in ("plotly", "matplotlib")}
        assert not imported & renderers, module
