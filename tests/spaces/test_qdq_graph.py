"""The exact rewrites of the int8 QDQ export (spaces/qdq_graph.py) on a tiny MBConv-like net."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from spaces import activations, qdq_graph
from spaces.deploy import to_onnx
from spaces.quantization import mark_quantized, quantize_weight
from spaces.task import Split


class _Block(nn.Module):
    """1x1 conv -> ReLU6 -> asymmetric zero pad -> depthwise 3x3 stride 2 -> ReLU6 -> 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(4, 16, 1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.depthwise = nn.Conv2d(16, 16, 3, stride=2, groups=16)
        self.project = nn.Conv2d(16, 4, 1)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.expand(x))
        return self.project(self.act(self.depthwise(self.pad(h))))


def _model() -> _Block:
    torch.manual_seed(0)
    model = _Block()
    layers = [model.expand, model.depthwise, model.project]
    with torch.no_grad():
        model.expand.weight.mul_(4.0)
    for layer in layers:
        code = quantize_weight(layer.weight, 8)
        with torch.no_grad():
            layer.weight.copy_(code.dequantize())
        mark_quantized(layer, code)
        activations.attach(layer)
    x = torch.randn(64, 4, 8, 8)
    activations.calibrate(model, layers, Split((x,), torch.zeros(len(x))))
    return model.eval()


def _run(data: bytes, optimize: bool, x: torch.Tensor, path: Path | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if path is not None:
        options.optimized_model_filepath = str(path)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x.numpy()})[0])


def test_rewrites_compute_the_same_numbers_on_integer_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    x = torch.randn(16, 4, 8, 8) * 1.5
    data = to_onnx(model, (x[:1],), int8=True, kernels_only=True)
    with monkeypatch.context() as m:
        m.setattr(qdq_graph, "simplify", lambda graph: None)
        plain = to_onnx(model, (x[:1],), int8=True, kernels_only=True)
    ops = Counter(n.op_type for n in onnx.load_from_string(data).graph.node)
    before = Counter(n.op_type for n in onnx.load_from_string(plain).graph.node)
    assert before["Pad"] == 1 and ops["Pad"] == 0  # folded into the depthwise Conv
    assert ops["Clip"] < before["Clip"] and ops["QuantizeLinear"] < before["QuantizeLinear"]
    # float kernels on the dequantized codes: the same numbers
    assert np.allclose(_run(data, False, x), _run(plain, False, x), atol=1e-5)
    # integer kernels, one after the other without a float round trip
    out = _run(data, True, x, tmp_path / "opt.onnx")
    optimized = Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert optimized["QLinearConv"] == 3 and optimized["DequantizeLinear"] == 1
    assert optimized["Pad"] == 0 and optimized["Conv"] == 0
    with torch.no_grad():
        ref = model(x).numpy()
    step = activations.activation_params(model.project)[2]
    assert np.abs(out - ref).max() <= 2 * step + 1e-6


def test_a_pad_with_another_reader_stays() -> None:
    class Two(_Block):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pad(self.act(self.expand(x)))
            return self.project(self.act(self.depthwise(h))) + h[:, :4, :4, :4]

    torch.manual_seed(0)
    model = Two()
    for layer in (model.expand, model.depthwise, model.project):
        activations.attach(layer, torch.tensor([0.05, 64.0, 0.05, 0.0]))
    x = torch.randn(2, 4, 8, 8)
    data = to_onnx(model.eval(), (x[:1],), int8=False)
    with torch.no_grad():
        ref = model(x).numpy()
    assert Counter(n.op_type for n in onnx.load_from_string(data).graph.node)["Pad"] == 1
    assert np.allclose(_run(data, False, x), ref, atol=1e-5)
