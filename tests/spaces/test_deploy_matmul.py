"""Int8 QDQ weights of Linear layers fed inputs of more than 2 dimensions (transformers).

The exporter writes such a layer as ``MatMul`` on a transposed copy of its weight, an
initializer not named after the layer; ``to_onnx(int8=True)`` must still find it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from spaces import activations
from spaces.deploy import to_onnx
from spaces.quantization import mark_quantized, quantize_weight

OUT_STEP = 16.0 / activations.QMAX


def _token_mlp(act_bits: int) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    mid = float((activations.QMAX + 1) // 2)
    for layer in (model[0], model[2]):
        code = quantize_weight(layer.weight, 8)
        with torch.no_grad():
            layer.weight.copy_(code.dequantize())
        mark_quantized(layer, code)
        if act_bits == 8:
            params = torch.tensor([8.0 / activations.QMAX, mid, OUT_STEP, mid])
            activations.attach(layer, params)
    return model.eval()


@pytest.mark.parametrize("kernels_only", [False, True])
def test_int8_weights_of_token_wise_linear_layers_run_on_integer_kernels(
    tmp_path: Path, kernels_only: bool
) -> None:
    model = _token_mlp(act_bits=8)
    x = torch.rand(4, 10, 32) * 4 - 2
    data = to_onnx(model, (x[:1],), int8=True, kernels_only=kernels_only)
    graph = onnx.load_from_string(data).graph
    int8_inits = [list(i.dims) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert sorted(int8_inits) == [[16], [32, 64], [64], [64, 16]]  # weights (transposed), zeros
    assert not any(
        list(i.dims) in ([32, 64], [64, 16])
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT
    )
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(out - ref).max() <= 2 * OUT_STEP + 1e-6
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "MatMul" not in ops and ops & {"MatMulIntegerToFloat", "QLinearMatMul"}


def test_weight_only_token_wise_layers_keep_float_weights() -> None:
    # ONNX Runtime would rewrite DequantizeLinear + MatMul into MatMulNBits with int8
    # activations (its default accuracy level): other numbers than the candidate's
    model = _token_mlp(act_bits=32)
    x = torch.rand(3, 10, 32)
    for kernels_only in (False, True):
        data = to_onnx(model, (x[:1],), int8=True, kernels_only=kernels_only)
        graph = onnx.load_from_string(data).graph
        assert not any(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], ref, atol=1e-5)
