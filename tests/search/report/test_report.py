"""``frontier report``: files, figures, hypervolume, knee, environment, and the page drawing
in headless Chromium with no console error and no network request."""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from search.environment import ENV_ATTR, RESULTS_ATTR, SPEC_ATTR
from search.pareto import hypervolume
from search.quality import REFERENCE as HV_REFERENCE
from search.quality import front_hypervolume
from search.report import build_report, hypervolume_curve, policy_tables
from search.results import FINAL_ATTR
from search.spec import StudyFileError, load_spec, parse_spec
from search.stored import open_stored
from search.testsplit import REMEASURED_ATTR
from tests.conftest import run_cli
from tests.search._small_studies import SmallStudies

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.mark.slow
def test_a_new_study_records_its_settings_environment_and_results_folder(
    small_studies: SmallStudies,
) -> None:
    study = optuna.load_study(study_name="joint", storage=small_studies.storage)
    spec = load_spec(small_studies.joint)
    assert parse_spec(study.user_attrs[SPEC_ATTR]) == spec
    env = study.user_attrs[ENV_ATTR]
    assert env["torch_threads"] == spec.latency.threads and env["seed"] == 0
    assert env["versions"]["torch"].startswith("2.13.0") and env["cpu"]
    assert study.user_attrs[RESULTS_ATTR] == str(small_studies.root.resolve())


@pytest.mark.slow
def test_hypervolume_curve_is_monotone_and_ends_at_the_front_hypervolume(
    small_studies: SmallStudies,
) -> None:
    report = build_report(open_stored(str(small_studies.joint), out=small_studies.root))
    curve = hypervolume_curve(report.trials)
    assert len(curve) == 10 and (np.diff(curve["hypervolume"]) >= 0).all()
    # the curve ends at the front's hypervolume, the figure `frontier status` prints
    teacher = report.teacher
    names = ["accuracy", "size_bytes", "latency_ms"]
    pts = report.front[names].astype(float).to_numpy() / [float(teacher[n]) for n in names]
    reference = [HV_REFERENCE[n] for n in names]
    expected = hypervolume(pts, reference, ["maximize", "minimize", "minimize"])
    assert math.isclose(curve["hypervolume"].iloc[-1], expected, rel_tol=1e-12)
    assert math.isclose(expected, front_hypervolume(report.trials), rel_tol=1e-12)
    assert 0 < expected < 1
    # the knee is a front point; the policy table has one row per front point
    assert report.knee_trial in set(report.front["trial"])
    assert list(report.policies) == ["bits", "prune"]
    assert list(report.policies["bits"].index) == list(report.front["trial"])
    assert list(report.policies["bits"].columns) == ["conv1", "conv2", "fc1", "fc2"]
    # the technique families: the joint front (every trial) reaches at least each family's
    families = report.families.set_index("family")
    assert families.loc["joint", "hypervolume"] == pytest.approx(expected, rel=1e-12)
    assert (families["hypervolume"] <= expected + 1e-12).all()
    assert families.loc["joint", "trials"] == 10 and len(families) >= 2


def test_policy_tables_read_the_stored_configs() -> None:
    front = pd.DataFrame(
        {
            "trial": [4, 7],
            "config": [
                '{"version":1,"student":"teacher","bits":{"fc1":4},"prune":{"fc1":0.5}}',
                '{"version":1,"student":"w0.5","bits":{},"prune":{},"channels":{"fc1":0.25}}',
            ],
        }
    )
    tables = policy_tables(front, ["conv1", "fc1"])
    assert tables["bits"].loc[4].tolist() == [32.0, 4.0]  # unlisted layers keep float
    assert tables["bits"].loc[7].tolist() == [32.0, 32.0]
    assert tables["prune"].loc[4].tolist() == [0.0, 0.5]
    # a family a later release adds shows up as it is, blank where unknown
    assert tables["channels"].loc[7, "fc1"] == 0.25 and math.isnan(tables["channels"].loc[4, "fc1"])


@pytest.mark.slow
def test_final_figures_missing_from_a_run_are_computed_once_then_reused(
    small_studies: SmallStudies, monkeypatch: pytest.MonkeyPatch
) -> None:
    joint = build_report(open_stored(str(small_studies.joint), out=small_studies.root))
    assert "measured after the search" in joint.test_note
    assert joint.front["final_latency_ms"].notna().all()  # the run (fixture) stored them
    stored = open_stored(str(small_studies.quant), out=small_studies.root)
    first = build_report(stored)
    tested = first.front["test_accuracy"]
    assert tested.notna().all() and ((tested >= 0) & (tested <= 1)).all()
    assert (first.front["test_accuracy_low"] <= tested).all()
    assert (tested <= first.front["test_accuracy_high"]).all()
    assert first.front["final_latency_ms"].gt(0).all()
    assert first.teacher is not None and first.teacher["final_latency_ms"] > 0
    assert "measured after the search" in first.test_note
    attrs = optuna.load_study(study_name="quant", storage=small_studies.storage).user_attrs
    assert {str(n) for n in first.front["trial"]} <= set(attrs[REMEASURED_ATTR])
    assert {str(n) for n in first.front["trial"]} <= set(attrs[FINAL_ATTR])

    def boom(*_: object, **__: object) -> dict[str, float]:
        raise AssertionError("measured again")

    monkeypatch.setattr("search.testsplit.remeasure_test", boom)
    monkeypatch.setattr("search.final.time_interleaved", boom)
    again = build_report(open_stored(str(small_studies.quant), out=small_studies.root))
    pd.testing.assert_series_equal(again.front["test_accuracy"], first.front["test_accuracy"])
    pd.testing.assert_series_equal(again.front["final_latency_ms"], first.front["final_latency_ms"])


@pytest.mark.slow
def test_report_command_writes_html_markdown_and_pngs(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    res = run_cli(
        "report",
        str(small_studies.joint),
        "--out",
        str(small_studies.root),
        "--dest",
        str(tmp_path),
    )
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "report.html").read_text()
    # self-contained: plotly.js inlined exactly once, no external script, no CDN
    assert html.count("Plotly.newPlot") == 7
    assert len(re.findall(r"plotly\.js v\d", html)) == 1
    assert "<script src" not in html and "cdn.plot.ly/plotly" not in html
    front = pd.read_csv(small_studies.root / "joint" / "front.csv")
    md = (tmp_path / "report.md").read_text()
    section = md.split("### Pareto front", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    trials = pd.read_csv(small_studies.root / "joint" / "trials.csv")
    off_front = trials[trials["baseline"].notna() & ~trials["front"]]["trial"].tolist()
    # the front, most accurate first, then the baselines that are not on it, marked
    assert [int(r.split("|")[1]) for r in rows] == front["trial"].tolist() + off_front
    assert "teacher (baseline, not on the front, over budget)" in section
    assert "Suggested knee point" in md and "Hypervolume (normalised)" in md
    assert "### Which technique" in md and "| joint |" in md
    assert re.search(r"Techniques: [a-z +]+\.", md.split("Suggested knee point", 1)[1])
    names = ("accuracy-size", "accuracy-latency", "objectives", "hypervolume", "policy")
    for name in (*names, "families"):
        png = tmp_path / f"report-joint-{name}.png"
        assert (
            png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < png.stat().st_size < 200_000
        )
        assert f"]({png.name})" in md


def _chromium_or_skip() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")


def _render(page_path: Path) -> dict[str, object]:
    """Open a page in headless Chromium; what drew, console errors, network requests."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS[1:],
                viewport={"width": 1300, "height": 900},
            )
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0", timeout=20_000
            )
            drawn = page.evaluate(
                """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
                    id: d.id,
                    svgs: d.querySelectorAll('svg.main-svg').length,
                    points: d.querySelectorAll('.scatterlayer .point').length,
                    heatmaps: d.querySelectorAll('.heatmaplayer image').length,
                    parcoords: d.querySelectorAll('.parcoords').length,
                    canvases: d.querySelectorAll('canvas').length,
                    traces: (d.data || []).length,
                }))"""
            )
            browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return {"drawn": drawn, "errors": errors, "requests": requests}


@pytest.mark.slow
def test_report_draws_in_headless_chromium_without_errors(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    _chromium_or_skip()
    single, both = tmp_path / "single", tmp_path / "both"
    res = run_cli(
        "report",
        str(small_studies.joint),
        "--out",
        str(small_studies.root),
        "--dest",
        str(single),
        "--no-png",
    )
    assert res.returncode == 0, res.stderr
    # comparing two studies read from the storage URL alone (no study files)
    res = run_cli(
        "report",
        "--storage",
        small_studies.storage,
        "--study",
        "joint",
        "--study",
        "quant",
        "--dest",
        str(both),
    )
    assert res.returncode == 0, res.stderr
    assert "quant: " in res.stdout and "joint: " in res.stdout

    page = _render(single / "report.html")
    drawn = {d["id"]: d for d in page["drawn"]}  # type: ignore[attr-defined]
    assert set(drawn) == {
        "s0-acc-size",
        "s0-acc-latency",
        "s0-objectives",
        "s0-parallel",
        "s0-hv",
        "s0-policy",
        "s0-families",
    }
    assert all(d["svgs"] >= 1 and d["traces"] >= 1 for d in drawn.values())
    # every completed trial is a point in the accuracy plots (plus front, test, knee, baselines)
    assert drawn["s0-acc-size"]["points"] >= 10 and drawn["s0-objectives"]["points"] >= 10
    assert drawn["s0-policy"]["heatmaps"] == 2  # bits and pruning
    assert drawn["s0-families"]["points"] >= 2  # the joint front at least
    assert drawn["s0-parallel"]["parcoords"] == 1 and drawn["s0-parallel"]["canvases"] >= 1
    assert page["errors"] == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in page["requests"])  # type: ignore[attr-defined]

    page = _render(both / "report.html")
    ids = {d["id"] for d in page["drawn"]}  # type: ignore[attr-defined]
    assert {"cmp-acc-size", "cmp-acc-latency", "cmp-hv", "s0-acc-size", "s1-acc-size"} <= ids
    assert page["errors"] == []
    html = (both / "report.html").read_text()
    assert len(re.findall(r"plotly\.js v\d", html)) == 1  # inlined once for both studies
    hv = re.findall(r"<td>(0\.\d{4})</td>", html)
    assert len(hv) == 2  # one hypervolume per study in the comparison table


@pytest.mark.slow
def test_studies_open_from_any_storage_and_errors_say_what_to_pass(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    from optuna.storages.journal import JournalFileBackend

    from search.spec import StudyFileError

    journal = tmp_path / "copy.log"
    optuna.copy_study(
        from_study_name="quant",
        from_storage=small_studies.storage,
        to_storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))),
    )
    by_file = open_stored(str(journal), out=small_studies.root)
    by_url = open_stored(storage=f"journal://{journal}", study_name="quant", out=small_studies.root)
    by_toml = open_stored(str(small_studies.quant), out=small_studies.root)
    assert by_file.spec == by_url.spec == by_toml.spec  # settings recorded in the study
    a, b = build_report(by_file), build_report(by_toml)
    assert a.front["trial"].tolist() == b.front["trial"].tolist()
    assert a.hypervolume == b.hypervolume

    with pytest.raises(StudyFileError, match=r"holds 2 studies \['joint', 'quant'\]; name one"):
        open_stored(str(small_studies.root / "study.db"))
    with pytest.raises(StudyFileError, match="No study 'nope'"):
        open_stored(storage=small_studies.storage, study_name="nope")
    with pytest.raises(StudyFileError, match="is not a study file"):
        open_stored("results.csv")


@pytest.mark.slow
def test_without_final_figures_select_quotes_search_time_latency_with_a_note(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    from evaluators.budgets import Budget
    from search.select import explain, select_point

    url = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name="quant", from_storage=small_studies.storage, to_storage=url)
    copy = optuna.load_study(study_name="quant", storage=url)
    copy.set_user_attr(REMEASURED_ATTR, {})
    copy.set_user_attr(FINAL_ATTR, {})
    report = build_report(open_stored(storage=url, out=small_studies.root), remeasure=False)
    assert report.front["test_accuracy"].isna().all()
    assert report.front["final_latency_ms"].isna().all()
    assert "No test figure for trial(s)" in report.test_note
    sel = select_point(report.front, Budget(), reference_accuracy=report.teacher["accuracy"])
    assert set(sel.table["latency_basis"]) == {"search"}
    assert (sel.table["latency_ms"] == sel.table["search_latency_ms"]).all()
    text = explain(sel)
    assert "their search-time latency is used" in text
    assert "from the teacher's validation accuracy" in text


@pytest.mark.slow
def test_read_commands_accept_a_results_folder(small_studies: SmallStudies, tmp_path: Path) -> None:
    # a study's own folder inside a shared --out: its storage is the parent's study.db
    stored = open_stored(str(small_studies.root / "joint"))
    assert stored.name == "joint" and stored.results_dir == small_studies.root.resolve()
    assert stored.spec is not None and stored.spec.study.name == "joint"
    # a folder holding its own study.db with one study
    folder = tmp_path / "results" / "quant"
    folder.mkdir(parents=True)
    optuna.copy_study(
        from_study_name="quant",
        from_storage=small_studies.storage,
        to_storage=f"sqlite:///{folder / 'study.db'}",
    )
    assert open_stored(str(folder)).name == "quant"
    res = run_cli("status", str(small_studies.root / "joint"))
    assert res.returncode == 0 and "study: joint" in res.stdout, res.stderr
    res = run_cli("select", str(small_studies.root / "joint"), "--no-remeasure")
    assert res.returncode == 0 and "Selected trial" in res.stdout, res.stderr
    with pytest.raises(StudyFileError, match="holds no single storage file"):
        open_stored(str(tmp_path))


@pytest.mark.slow
def test_a_study_without_a_complete_trial_still_reports(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    from search.driver import open_study

    spec = load_spec(small_studies.joint)
    study = open_study(spec, f"sqlite:///{tmp_path / 'study.db'}", results_dir=tmp_path)
    trial = study.ask()
    trial.set_user_attr("fail_reason", "boom")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    res = run_cli("report", str(tmp_path / "study.db"))
    assert res.returncode == 0, res.stderr
    assert "0 front points" in res.stdout
    assert "The front is empty" in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob("*.png"))
    res = run_cli("select", str(tmp_path / "study.db"), "--max-size", "1KB")
    assert res.returncode == 2 and "has an empty front: nothing to select" in res.stderr
    if Path(CHROMIUM).exists():
        page = _render(tmp_path / "report.html")
        assert page["errors"] == [] and len(page["drawn"]) == 7  # type: ignore[arg-type]


def test_reading_never_creates_a_database(tmp_path: Path) -> None:
    from search.spec import StudyFileError

    missing = tmp_path / "nope" / "study.db"
    with pytest.raises(StudyFileError, match="does not exist; run the study first"):
        open_stored(storage=f"sqlite:///{missing}", study_name="x")
    with pytest.raises(StudyFileError, match="does not exist"):
        open_stored(str(tmp_path / "study.db"))
    assert not list(tmp_path.rglob("*.db"))
