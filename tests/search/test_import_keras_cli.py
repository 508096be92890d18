"""``[task] keras``, through the real command line: the README's worked example."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.search._readme_examples import (
    check_export_reproduces_the_candidate,
    layer_columns,
    run_example,
)

HAS_TF = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras", "tf2onnx"))
# in CI the extra is installed (.ci/run): a missing package fails there instead of skipping
pytestmark = pytest.mark.skipif(
    not HAS_TF and os.environ.get("CI") != "true",
    reason='the tensorflow extra is not installed (pip install -e ".[tensorflow]")',
)


@pytest.mark.slow
def test_the_readme_keras_example_runs_and_its_export_reproduces_the_candidate(
    tmp_path: Path,
) -> None:
    run_example("keras", tmp_path, n_trials=4)
    study = tmp_path / "digits_keras.toml"
    assert layer_columns(study) == [
        "bits.sequential_1.conv1_1",
        "bits.sequential_1.conv2_1",
        "bits.sequential_1.fc_1",
    ]
    check_export_reproduces_the_candidate(study)
