"""``[task] onnx``, through the real command line: the README's worked example and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import run_cli
from tests.search._readme_examples import (
    check_export_reproduces_the_candidate,
    layer_columns,
    run_example,
    write_npz,
)
from tests.studyfile import write_study


@pytest.mark.slow
def test_the_readme_onnx_example_runs_and_its_export_reproduces_the_candidate(
    tmp_path: Path,
) -> None:
    run_example("onnx", tmp_path, n_trials=4)
    study = tmp_path / "digits_onnx.toml"
    # the layers keep their PyTorch names
    assert layer_columns(study) == ["bits.conv1", "bits.conv2", "bits.fc"]
    check_export_reproduces_the_candidate(study)


def test_an_unsupported_operator_ends_the_run_with_one_line_and_exit_2(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "fc.weight"], ["h"], name="fc/Gemm"),
            helper.make_node("Einsum", ["h"], ["y"], name="mix/Einsum", equation="ij->ij"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(np.eye(3, 4, dtype=np.float32), "fc.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    write_npz(tmp_path / "data.npz", 10, 4)
    study = write_study(
        tmp_path,
        task={"name": None, "onnx": "model.onnx", "data": "data.npz"},
        space={"students": None},
    )
    res = run_cli("run", str(study), "--no-progress")
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert errors == [
        f"frontier: error: 'task.onnx' = '{tmp_path / 'model.onnx'}': operator Einsum (node "
        "'mix/Einsum') is not supported; README \"ONNX files\" lists the supported operators."
    ]
