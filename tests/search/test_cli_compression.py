"""The real CLI on digits-mlp with every compression dimension, and its artifacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from evaluators import WeightCache
from evaluators.tasks.digits import digits_mlp
from spaces import CompressionConfig, DistillationSettings, FinetuneSettings, StudentPool, compress
from spaces.artifacts import load_candidate, save_candidate
from tests.conftest import run_cli
from tests.studyfile import write_study


def _mlp_study(folder: Path, runtime: str) -> Path:
    """digits-mlp with every compression dimension in its space."""
    return write_study(
        folder,
        study={"name": "mlp", "n_trials": 8, "sampler": "random"},
        task={"name": "digits-mlp"},
        space={
            "bits": [3, 4, 8, 32],
            "channels_max": 0.5,
            "channels_step": 0.25,
            "act_bits": [8, 32],
            "granularity": ["channel", "tensor"],
            "rounding": ["nearest", "gptq"],
            "students": ["teacher", "w0.5-d1"],
        },
        latency={"runtime": runtime},
    )


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch-int8"])
def test_digits_mlp_study_searches_channels_activations_granularity_and_rounding(
    tmp_path: Path, runtime: str
) -> None:
    study = _mlp_study(tmp_path, runtime)
    proc = run_cli("run", str(study), "--out", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 8 and (trials["state"] == "COMPLETE").all(), trials["fail_reason"]
    for column in ("channels.fc1", "channels.fc2", "act_bits", "granularity", "rounding"):
        assert column in trials.columns
    assert "channels.fc3" not in trials.columns  # the classifier's size is fixed
    int8 = trials[trials["baseline"] == "uniform-int8"].iloc[0]
    assert int8["act_bits"] == 8 and int8["rounding"] == "nearest"
    assert trials["front"].any()


def test_a_digits_mlp_candidate_round_trips(cache_dir: Path, tmp_path: Path) -> None:
    task = digits_mlp(cache=WeightCache(cache_dir), seed=0)
    pool = StudentPool(task, WeightCache(tmp_path / "s"), DistillationSettings(epochs=2), seed=0)
    config = CompressionConfig(
        bits={"fc1": 3, "fc2": 4, "fc3": 8},
        channels={"fc1": 0.5, "fc2": 0.75},
        prune={"fc1": 0.6},
        act_bits=8,
        granularity="tensor",
    )
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=1), seed=0)
    assert cand.model.fc1.out_features == 150 and cand.model.fc2.out_features == 25
    loaded = load_candidate(save_candidate(cand, tmp_path / "c"), task)
    x = task.test.inputs[0]
    with torch.no_grad():
        assert torch.equal(loaded.model(x), cand.model(x))
