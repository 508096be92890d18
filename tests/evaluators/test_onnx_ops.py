"""Each converted ONNX operator against ONNX Runtime, one single-node graph at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from evaluators.tasks.onnx_convert import convert

I64 = np.int64


def _case(op: str, opset: int = 17, consts: tuple[Any, ...] = (), **attrs: Any) -> Any:
    name = f"{op}-{opset}-" + "-".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return pytest.param(op, opset, consts, attrs, id=name)


CASES = [
    *(
        _case(op)
        for op in (
            "Abs",
            "Ceil",
            "Cos",
            "Erf",
            "Exp",
            "Floor",
            "HardSwish",
            "Neg",
            "Relu",
            "Selu",
            "Sigmoid",
            "Sign",
            "Sin",
            "Softplus",
            "Softsign",
            "Tanh",
            "Identity",
            "GlobalAveragePool",
            "GlobalMaxPool",
        )
    ),
    _case("Log", consts=("positive",)),
    _case("Sqrt", consts=("positive",)),
    _case("Reciprocal", consts=("positive",)),
    _case("Mish", opset=18),
    _case("Gelu", opset=20),
    _case("Gelu", opset=20, approximate="tanh"),
    _case("Celu", alpha=0.5),
    _case("Elu", alpha=0.7),
    _case("LeakyRelu", alpha=0.2),
    _case("HardSigmoid", alpha=0.3, beta=0.4),
    _case("PRelu", consts=(np.full((3, 1, 1), 0.25, np.float32),)),
    _case("Clip", consts=(np.array(-0.5, np.float32), np.array(0.7, np.float32))),
    _case("Clip", opset=6, min=-0.5, max=0.7),
    _case("Softmax", opset=11, axis=1),
    _case("Softmax", opset=13, axis=1),
    _case("LogSoftmax", opset=13),
    _case("ReduceMean", opset=13, axes=[2, 3], keepdims=0),
    _case("ReduceMean", opset=18, consts=(np.array([1, -1], I64),)),
    _case("ReduceMax", opset=18, consts=(np.array([2], I64),), keepdims=0),
    _case("ReduceMin", opset=13, axes=[1]),
    _case("ReduceSum", opset=13, consts=(np.array([3], I64),)),
    _case("ArgMax", axis=1, keepdims=0),
    _case("ArgMin", axis=3),
    _case("Flatten", axis=2),
    _case("Transpose", perm=[0, 2, 3, 1]),
    _case("Split", opset=13, consts=(np.array([1, 2], I64),), axis=1),
    _case("Split", opset=18, axis=2, num_outputs=2),
    _case("Tile", consts=(np.array([1, 2, 1, 1], I64),)),
    _case("Expand", consts=(np.array([2, 2, 3, 5, 4], I64),)),
    _case("Pad", consts=(np.array([0, 0, 1, 2, 0, 0, 2, 1], I64),), mode="reflect"),
    _case("Pad", consts=(np.array([0, 0, 1, 0, 0, 0, 0, 1], I64),), mode="edge"),
    _case("Pad", opset=10, pads=[0, 1, 1, 0, 0, 0, 2, 1], value=0.5),
    _case("MaxPool", kernel_shape=[2, 2], ceil_mode=1),
    _case("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    _case("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    _case("AveragePool", kernel_shape=[3, 2], pads=[1, 0, 1, 0]),
    _case("InstanceNormalization", consts=(np.full(3, 1.5, np.float32), np.zeros(3, np.float32))),
    _case("LayerNormalization", consts=(np.full(4, 0.5, np.float32), np.ones(4, np.float32))),
    _case(
        "BatchNormalization",
        consts=tuple(np.linspace(0.5, 1.5, 3, dtype=np.float32) for _ in range(4)),
    ),
    _case("Squeeze", opset=11, axes=[0]),  # on a batch of one (see _input)
    _case("Unsqueeze", opset=11, axes=[0, 5]),
    _case("Unsqueeze", opset=13, consts=(np.array([1], I64),)),
    _case(
        "Slice",
        opset=13,
        consts=(
            np.array([1, -1], I64),
            np.array([5, -4], I64),
            np.array([2, 3], I64),
            np.array([2, -1], I64),
        ),
    ),
    _case("Slice", opset=9, starts=[1], ends=[3], axes=[1]),
    _case("Gather", consts=(np.array([[2, 0], [1, 1]], I64),), axis=1),
    _case("Concat", consts=(np.ones((2, 1, 5, 4), np.float32),), axis=1),
    _case("Add", consts=(np.float32(0.5),)),
    _case("Sub", consts=(np.arange(4, dtype=np.float32),)),
    _case("Mul", consts=(np.arange(4, dtype=np.float32),)),
    _case("Div", consts=(np.full(4, 2.0, np.float32),)),
    _case("Pow", consts=(np.float32(2.0),)),
    _case("Max", consts=(np.zeros(4, np.float32),)),
    _case("Min", consts=(np.zeros(4, np.float32),)),
    _case("Sum", consts=(np.ones(4, np.float32),)),
    _case("Mean", consts=(np.ones(4, np.float32),)),
    _case("MatMul", consts=(np.ones((4, 2), np.float32),)),
    *(_case(op, consts=(np.float32(0.1),)) for op in ("Greater", "GreaterOrEqual", "Less")),
    _case("LessOrEqual", consts=(np.zeros(4, np.float32),)),
    _case("Equal", consts=(np.zeros(4, np.float32),)),
    _case("Cast", to=TensorProto.INT64),
    _case("Dropout", opset=13),
    _case(
        "Conv",
        consts=(np.ones((6, 1, 3, 3), np.float32) / 9,),
        group=3,
        auto_pad="SAME_UPPER",
        strides=[2, 2],
    ),
    _case(
        "Conv",
        consts=(np.ones((2, 3, 2, 2), np.float32), np.ones(2, np.float32)),
        pads=[0, 1, 1, 0],
        dilations=[1, 2],
    ),
]


def _input(op: str, consts: tuple[Any, ...]) -> np.ndarray:
    batch = 1 if op == "Squeeze" else 2
    x = np.random.default_rng(0).normal(size=(batch, 3, 5, 4)).astype(np.float32)
    return np.abs(x) + 0.1 if _positive(consts) else x


def _positive(consts: tuple[Any, ...]) -> bool:
    return bool(consts) and isinstance(consts[0], str)


@pytest.mark.parametrize(("op", "opset", "consts", "attrs"), CASES)
def test_an_operator_computes_what_onnxruntime_computes(
    op: str, opset: int, consts: tuple[Any, ...], attrs: dict[str, Any]
) -> None:
    x = _input(op, consts)
    if _positive(consts):
        consts = ()
    inits = [numpy_helper.from_array(np.asarray(c), f"c{i}") for i, c in enumerate(consts)]
    n_out = 2 if op == "Split" else 1
    node = helper.make_node(
        op, ["x", *(i.name for i in inits)], [f"y{i}" for i in range(n_out)], name="n", **attrs
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_empty_tensor_value_info(f"y{i}") for i in range(n_out)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    with torch.no_grad():
        got = convert(model)(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_readme_lists_exactly_the_supported_operators() -> None:
    import re

    from evaluators.tasks.onnx_ops import OPS
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    listed = re.search(r"<!-- onnx-operators -->\n(.*?)\.\n", text, re.S)
    assert listed, "README has no <!-- onnx-operators --> list"
    assert re.findall(r"`(\w+)`", listed.group(1)) == sorted({*OPS, "Constant"})
