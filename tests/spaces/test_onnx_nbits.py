"""Group-wise Linear layers exported as ONNX Runtime's MatMulNBits (spaces.onnx_nbits)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from spaces import activations
from spaces.deploy import to_onnx
from spaces.onnx_nbits import nbits_layers, pack, unpack
from spaces.quantization import mark_quantized, quantize_weight, weight_codes


def _quantize(layer: nn.Module, bits: int, granularity: str) -> None:
    code = quantize_weight(layer.weight, bits, granularity=granularity)
    with torch.no_grad():
        layer.weight.copy_(code.dequantize())
    mark_quantized(layer, code)


def _mlp() -> nn.Sequential:
    """4-bit g32 (K = 100: a short last group), 6-bit g32 (stored at 8 bits), 3-bit g32
    without bias, and layers that stay float: per-channel, one group a row, float."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(100, 64),
        nn.ReLU(),
        nn.Linear(64, 48),
        nn.ReLU(),
        nn.Linear(48, 40, bias=False),
        nn.Linear(40, 32),  # per-channel
        nn.Linear(32, 24),  # g32 with one group a row: a per-channel layer
        nn.Linear(24, 10),  # float
    )
    for i, (bits, granularity) in enumerate(
        [(4, "g32"), (6, "g32"), (3, "g32"), (4, "channel"), (4, "g32")]
    ):
        _quantize(model[[0, 2, 4, 5, 6][i]], bits, granularity)
    return model.eval()


def _run(data: bytes, *inputs: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
    out: np.ndarray = session.run(None, feed)[0]
    return out


def test_only_group_wise_linear_layers_with_several_groups_qualify() -> None:
    assert sorted(nbits_layers(_mlp())) == ["0", "2", "4"]


@pytest.mark.parametrize("shape", [(5, 100), (3, 7, 100)])
def test_matmulnbits_onnx_reproduces_the_torch_candidate(shape: tuple[int, ...]) -> None:
    model = _mlp()
    x = torch.randn(*shape)
    data = to_onnx(model, (x[:1],), int8=False, nbits=True)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_run(data, x), ref, atol=1e-4, rtol=0)
    graph = onnx.load_from_string(data).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert [len(n.input) for n in nbits] == [6, 6, 3]  # biases folded into the nodes
    inits = {i.name: i for i in graph.initializer}
    packed = [inits[n.input[1]] for n in nbits]  # the codes: (N, blocks, G * bits / 8) bytes
    assert [p.data_type for p in packed] == [onnx.TensorProto.UINT8] * 3
    assert [list(p.dims) for p in packed] == [[64, 4, 16], [48, 2, 32], [40, 2, 16]]
    # no float copy of a packed weight is left: float initializers are the float layers'
    float_numel = sum(
        math.prod(i.dims) for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT
    )
    scales = 64 * 4 + 48 * 2 + 40 * 2
    biases = 64 + 48 + 32 + 24 + 10
    assert float_numel == scales + biases + 40 * 32 + 32 * 24 + 24 * 10
    assert len(data) < len(to_onnx(model, (x[:1],), int8=False))


def test_onnxruntime_decodes_the_codes_bit_exactly() -> None:
    model = _mlp()
    for layer in nbits_layers(model).values():
        eye = torch.eye(layer.in_features)
        bare = nn.Linear(layer.in_features, layer.out_features, bias=False)
        with torch.no_grad():
            bare.weight.copy_(layer.weight)
        code = weight_codes(layer)
        assert code is not None
        mark_quantized(bare, code)
        w = _run(to_onnx(bare, (eye[:1],), int8=False, nbits=True), eye).T
        assert np.array_equal(w, layer.weight.detach().numpy())  # codes * scale, bit for bit
        assert np.array_equal(unpack(pack(code)), code.dequantize().numpy())


def test_activation_quantization_and_int8_layers_are_kept_around_matmulnbits() -> None:
    model = _mlp()
    mid = float((activations.QMAX + 1) // 2)
    for i in (0, 5):  # a MatMulNBits layer and a per-channel int8 layer, 8-bit activations
        activations.attach(
            model[i], torch.tensor([8.0 / activations.QMAX, mid, 16.0 / activations.QMAX, mid])
        )
    x = torch.rand(6, 100) * 6 - 3
    data = to_onnx(model, (x[:1],), int8=True, nbits=True)
    ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert ops.count("MatMulNBits") == 3 and "QuantizeLinear" in ops
    assert "DequantizeLinear" in ops  # the per-channel layer's int8 weight (QDQ)
    with torch.no_grad():
        ref = model(x).numpy()
    # float rounding may flip an activation code (a step of 16 / 127 at layer 0's output),
    # which the later layers shrink: measured <= 0.018 on outputs of about 0.3
    assert np.abs(_run(data, x) - ref).max() < 0.05
