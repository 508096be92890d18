"""``frontier export``: the rebuilt artifact is the measured one, and the ONNX file run in
onnxruntime on the test split reproduces the test accuracy of the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import optuna
import pytest
import torch

from evaluators import predict
from search.export import FILES, load_exported, onnx_metric, onnx_outputs
from search.rebuild import RebuildMismatch, rebuild
from search.report import build_report
from search.stored import open_stored
from spaces import CompressionConfig, unpack
from tests.conftest import cli_in_process, run_cli
from tests.search._readme_examples import run_card_snippet
from tests.search._small_studies import SmallStudies


@pytest.mark.slow
def test_export_writes_a_model_whose_onnx_reproduces_the_reported_test_accuracy(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    stored = open_stored(str(small_studies.joint), out=small_studies.root)
    report = build_report(stored)
    # a compressed (not baseline) front point: pruned, quantized, fine-tuned
    row = report.front[report.front["baseline"] == ""].iloc[0]
    trial = int(row["trial"])
    dest = tmp_path / "model"
    res = run_cli(
        "export",
        str(small_studies.joint),
        "--out",
        str(small_studies.root),
        "--trial",
        str(trial),
        "--dest",
        str(dest),
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES.values())

    # the artifact is the one the study measured, byte count for byte count
    artifact = (dest / FILES["artifact"]).read_bytes()
    assert len(artifact) == int(row["size_bytes"])
    meta = json.loads((dest / FILES["meta"]).read_text())
    assert meta["trial"] == trial and meta["seed"] == trial  # study seed 0 + trial number
    config = CompressionConfig.from_json((dest / FILES["config"]).read_text())
    assert config.to_json() == stored.study.trials[trial].user_attrs["config"]

    # the ONNX file, in onnxruntime, on the test split: the report's test accuracy exactly
    task = stored.context().task
    onnx_acc = onnx_metric(dest / FILES["onnx"], task.test, task.metric)
    assert onnx_acc == pytest.approx(float(row["test_accuracy"]), abs=1e-9)
    assert meta["figures"]["test_accuracy_onnxruntime"] == pytest.approx(onnx_acc)

    # the PyTorch model loaded from the packed artifact computes what ONNX computes
    model = load_exported(dest, task)
    torch_out = predict(model, task.test)
    assert torch.allclose(torch_out, onnx_outputs(dest / FILES["onnx"], task.test), atol=1e-4)
    assert set(model.state_dict()) == set(unpack(artifact).state_dict)

    card = (dest / FILES["card"]).read_text()
    assert f"trial {trial}" in card and f"{len(artifact):,} B" in card
    assert f"{100 * onnx_acc:.2f}%" in card and "onnxruntime" in card and "load_exported" in card
    # its ONNX Runtime snippet runs as written
    assert run_card_snippet(dest)["outputs"].shape[0] == 1


@pytest.mark.slow
def test_export_without_trial_takes_the_selected_point_or_says_nothing_fits(
    small_studies: SmallStudies, tmp_path: Path
) -> None:
    res = run_cli(
        "export",
        "--storage",
        small_studies.storage,
        "--study",
        "quant",
        "--max-size",
        "1B",
        "--dest",
        str(tmp_path / "none"),
    )
    assert res.returncode == 1
    assert "No front point meets the budgets" in res.stderr and "pass --trial N" in res.stderr
    assert not (tmp_path / "none").exists()

    res = run_cli(
        "export",
        "--storage",
        small_studies.storage,
        "--study",
        "quant",
        "--max-drop",
        "5",
        "--dest",
        str(tmp_path / "best"),
    )
    assert res.returncode == 0, res.stderr
    chosen = int(res.stdout.split("Selected trial ", 1)[1].split()[0])
    assert json.loads((tmp_path / "best" / FILES["meta"]).read_text())["trial"] == chosen
    card = (tmp_path / "best" / FILES["card"]).read_text()
    assert "highest validation accuracy" in card and "final, timed side by side" in card


@pytest.mark.slow
def test_rebuild_refuses_a_candidate_that_is_not_the_measured_one(
    small_studies: SmallStudies,
) -> None:
    stored = open_stored(str(small_studies.quant), out=small_studies.root)
    trial = copy.deepcopy(stored.study.get_trials(states=[optuna.trial.TrialState.COMPLETE])[1])
    ctx = stored.context()
    assert len(rebuild(ctx, trial).artifact) == trial.user_attrs["size_bytes"]
    trial.user_attrs["size_bytes"] += 1
    with pytest.raises(RebuildMismatch, match="the rebuilt artifact has"):
        rebuild(ctx, trial)


@pytest.mark.slow
def test_export_of_a_missing_trial_exits_2_with_one_line(
    small_studies: SmallStudies, capsys: pytest.CaptureFixture[str]
) -> None:
    res = cli_in_process(
        capsys,
        "export",
        str(small_studies.quant),
        "--out",
        str(small_studies.root),
        "--trial",
        "999",
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "frontier: error: Trial 999 of study 'quant' does not exist; export a complete trial."
    )
