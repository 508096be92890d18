"""The ONNX importer: the converter against ONNX Runtime, layer names, data files, errors.

Models are small PyTorch modules exported here (by the TorchScript exporter at opset 17 and
by torch's default dynamo exporter at its newer opset), or graphs written with onnx.helper.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from evaluators.tasks.onnx_convert import convert
from evaluators.tasks.onnx_import import onnx_task
from spaces.cache import WeightCache
from spaces.deploy import to_onnx
from spaces.layers import compressible_layers


class ResidualCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1))
        self.down = nn.Conv2d(8, 16, 3, stride=2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn1(self.conv1(x)))
        x = x + self.block(x)
        x = F.avg_pool2d(x, 2)
        x = self.down(F.pad(x, (0, 1, 0, 1)))  # TensorFlow-style asymmetric "SAME"
        return self.fc(torch.cat([x, x], dim=1).mean(dim=(2, 3))[:, :16])


class Signal1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 5, stride=2, padding=2)
        self.bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.bn(self.conv(x)))
        x = F.adaptive_avg_pool1d(x, 1).flatten(1)
        return torch.sigmoid(self.head(x)) - torch.tanh(x[:, :3])


class TinyAttention(nn.Module):
    """Two inputs (tokens, integer mask), shapes computed at run time, matmuls, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.qkv = nn.Linear(8, 24)
        self.out = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, 2, 4).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / 2.0
        att = att.masked_fill(mask[:, None, None, :] == 0, -1e4)
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, 8)
        return self.out(F.gelu(y).mean(dim=1))


def _inputs(model: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    if isinstance(model, ResidualCNN):
        return (torch.randn(batch, 3, 8, 8, generator=g),)
    if isinstance(model, Signal1d):
        return (torch.randn(batch, 2, 16, generator=g),)
    mask = (torch.rand(batch, 5, generator=g) > 0.3).long()
    mask[:, 0] = 1
    return torch.randn(batch, 5, 8, generator=g), mask


def _trained_looking(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding them matters."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export(model: nn.Module, *, dynamo: bool) -> onnx.ModelProto:
    """``model`` as ONNX with a dynamic batch, by either of torch's exporters."""
    example = _inputs(model, 2)
    names = [f"in{i}" for i in range(len(example))]
    buf = io.BytesIO()
    if dynamo:
        batch = torch.export.Dim("batch")
        torch.onnx.export(
            model,
            example,
            buf,
            input_names=names,
            dynamic_shapes=tuple({0: batch} for _ in example),
            external_data=False,
        )
    else:
        torch.onnx.export(
            model,
            example,
            buf,
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["out"],
            dynamic_axes={**{n: {0: "b"} for n in names}, "out": {0: "b"}},
        )
    return onnx.load_from_string(buf.getvalue())


def _ort(model: bytes, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    return np.asarray(session.run(None, feed)[0])


CASES = [
    pytest.param(ResidualCNN, False, id="cnn-opset17"),
    pytest.param(ResidualCNN, True, id="cnn-dynamo"),
    pytest.param(Signal1d, False, id="conv1d-opset17"),
    pytest.param(TinyAttention, False, id="attention-opset17"),
    pytest.param(TinyAttention, True, id="attention-dynamo"),
]


@pytest.mark.parametrize(("build", "dynamo"), CASES)
def test_converted_model_computes_what_onnxruntime_computes(build: type, dynamo: bool) -> None:
    torch.manual_seed(0)
    model = _trained_looking(build())
    proto = export(model, dynamo=dynamo)
    converted = convert(proto)
    for batch in (5, 3):  # the batch stays dynamic
        inputs = _inputs(model, batch)
        with torch.no_grad():
            got = converted(*inputs).numpy()
            want = model(*inputs).numpy()
        np.testing.assert_allclose(got, _ort(proto.SerializeToString(), inputs), atol=2e-6)
        np.testing.assert_allclose(got, want, atol=2e-6)
    # the search's own export (TorchScript exporter, opset 17) writes it back, batch dynamic
    again = to_onnx(converted, _inputs(model, 1), int8=False)
    inputs = _inputs(model, 4)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(again, inputs), converted(*inputs).numpy(), atol=2e-6)


@pytest.mark.parametrize("dynamo", [False, True], ids=["opset17", "dynamo"])
def test_layers_are_named_as_in_pytorch(dynamo: bool) -> None:
    """Conv / Gemm / MatMul become nn.Conv / nn.Linear named after the original modules (the
    TorchScript exporter folds BatchNorm into conv1 and renames its weight; the node name
    still says conv1)."""
    proto = export(_trained_looking(ResidualCNN()), dynamo=dynamo)
    layers = compressible_layers(convert(proto))
    assert list(layers) == ["conv1", "block.0", "down", "fc"]
    assert [type(m) for m in layers.values()] == [nn.Conv2d, nn.Conv2d, nn.Conv2d, nn.Linear]
    assert list(compressible_layers(convert(proto))) == list(layers)  # stable
    attention = compressible_layers(convert(export(TinyAttention().eval(), dynamo=False)))
    assert list(attention) == ["qkv", "out"]
    assert all(isinstance(m, nn.Linear) and m.bias is not None for m in attention.values())


def _graph(nodes: list, inits: list, inputs: list, outputs: list, opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def _value(name: str, *shape: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_matmul_by_a_constant_becomes_a_linear_layer_with_its_bias() -> None:
    """Keras and TensorFlow write Dense as MatMul + Add: one nn.Linear with the bias, named
    after the node; a weight transposed by a Transpose node is folded first."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    model = _graph(
        [
            helper.make_node("Transpose", ["w_t"], ["w"], perm=[1, 0], name="dense/Transpose"),
            helper.make_node("MatMul", ["x", "w"], ["h"], name="model/dense/MatMul"),
            helper.make_node("Add", ["h", "b"], ["y"], name="model/dense/BiasAdd"),
        ],
        [
            numpy_helper.from_array(np.ascontiguousarray(w.T), "model/dense/ReadVariableOp:0"),
            numpy_helper.from_array(b, "b"),
        ],
        [_value("x", "n", 4)],
        [_value("y", "n", 6)],
    )
    proto = onnx.load_from_string(model)
    proto.graph.node[0].input[0] = "model/dense/ReadVariableOp:0"
    converted = convert(proto)
    layers = compressible_layers(converted)
    assert list(layers) == ["model.dense"]
    assert isinstance(layers["model.dense"], nn.Linear) and layers["model.dense"].bias is not None
    x = torch.from_numpy(rng.normal(size=(3, 4)).astype(np.float32))
    np.testing.assert_allclose(converted(x).detach().numpy(), x.numpy() @ w + b, atol=1e-6)


def _write_task_files(folder: Path, model: bytes, **arrays: np.ndarray) -> tuple[str, str]:
    (folder / "m.onnx").write_bytes(model)
    np.savez(folder / "d.npz", **arrays)
    return str(folder / "m.onnx"), str(folder / "d.npz")


def _linear_graph(node_op: str = "Relu", domain: str = "") -> bytes:
    w = np.eye(4, 3, dtype=np.float32)
    return _graph(
        [
            helper.make_node("Gemm", ["x", "fc.weight"], ["h"], name="fc/Gemm"),
            helper.make_node(node_op, ["h"], ["y"], name="odd_node", domain=domain),
        ],
        [numpy_helper.from_array(w, "fc.weight")],
        [_value("x", "n", 4)],
        [_value("y", "n", 3)],
    )


def _splits(n: int = 12, classes: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {}
    for split in ("train", "validation", "test"):
        out[f"x_{split}"] = rng.normal(size=(n, 4)).astype(np.float32)
        if classes:
            out[f"y_{split}"] = rng.integers(0, 3, size=n)
    return out


def _task(model: str, data: str | dict[str, str], kind: str | None = None, **options: object):
    return onnx_task(
        model, data=data, kind=kind, options=options, cache=WeightCache("/nonexistent")
    )


@pytest.mark.parametrize(("op", "domain"), [("Einsum", ""), ("FusedGemm", "com.microsoft")])
def test_an_unsupported_operator_is_one_line_naming_it_and_its_node(
    tmp_path: Path, op: str, domain: str
) -> None:
    model, data = _write_task_files(tmp_path, _linear_graph(op, domain), **_splits())
    with pytest.raises(ValueError) as err:
        _task(model, data)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"'task.onnx' = {model!r}: operator ")
    assert f"{op} (node 'odd_node') is not supported" in message


def test_a_classification_task_from_one_npz_file(tmp_path: Path) -> None:
    arrays = _splits()
    model, data = _write_task_files(tmp_path, _linear_graph(), **arrays)
    task = _task(model, data, batch_size=8)
    assert task.kind == "classification" and task.metric.name == "accuracy"
    assert task.batch_size == 8
    assert torch.equal(task.val.targets, torch.from_numpy(arrays["y_validation"]))
    assert torch.equal(task.test.inputs[0], torch.from_numpy(arrays["x_test"]))
    assert [t.shape for t in task.example_input] == [(1, 4)]
    # the name identifies the model's and the data's content (cached students are keyed by it)
    arrays["x_test"][0, 0] += 1.0
    np.savez(data, **arrays)
    assert _task(model, data).name != task.name
    assert _task(model, data).name.startswith("onnx-m-")


def test_one_file_per_split_and_reference_targets(tmp_path: Path) -> None:
    """``kind = "logits"`` without targets: the model's own outputs are the targets."""
    model = tmp_path / "m.onnx"
    model.write_bytes(_linear_graph())
    files = {}
    for split, arrays in (("train", 9), ("validation", 7), ("test", 5)):
        files[split] = str(tmp_path / f"{split}.npz")
        np.savez(files[split], x=np.random.default_rng(arrays).normal(size=(arrays, 4)))
    task = _task(str(model), files, kind="logits")
    assert task.kind == "logits" and len(task.val) == 7
    assert task.val.inputs[0].dtype == torch.float32  # cast to the graph input's type
    torch.testing.assert_close(task.val.targets, task.model(*task.val.inputs))
    embedding = _task(str(model), files, kind="embedding")
    assert embedding.metric.name == "cosine_fidelity"


@pytest.mark.parametrize(
    ("arrays", "kind", "options", "message"),
    [
        ({"x_train": None}, None, {}, "no ['x_train']"),
        ({}, None, {"colour": 1}, "Unknown key 'task.options.colour'"),
        ({}, None, {"batch_size": "8"}, "'task.options.batch_size' must be int"),
        ({}, None, {"output": "nope"}, "'nope' is not an output of the graph"),
        ({}, "regression", {}, "'task.kind' = 'regression'"),
        ({"y_test": np.full(12, 7)}, None, {}, "the model has 3 outputs"),
        ({"x_test": np.zeros((12, 5), np.float32)}, None, {}, "input shapes and layout"),
    ],
)
def test_mistakes_in_the_data_or_options_name_the_key(
    tmp_path: Path, arrays: dict, kind: str | None, options: dict, message: str
) -> None:
    data = _splits()
    for key, value in arrays.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    model, path = _write_task_files(tmp_path, _linear_graph(), **data)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _task(model, path, kind, **options)


def test_labels_are_needed_for_classification(tmp_path: Path) -> None:
    model, data = _write_task_files(tmp_path, _linear_graph(), **_splits(classes=False))
    with pytest.raises(ValueError, match="no y_train"):
        _task(model, data)


def test_a_fixed_batch_size_is_named_when_it_breaks_the_model(tmp_path: Path) -> None:
    """torch.onnx.export without dynamic shapes bakes the batch into Reshape targets."""
    proto = onnx.load_from_string(_linear_graph())
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    proto.graph.initializer.append(numpy_helper.from_array(np.array([1, 3]), "shape"))
    proto.graph.node.append(helper.make_node("Reshape", ["y", "shape"], ["z"], name="r"))
    proto.graph.output[0].name = "z"
    model, data = _write_task_files(tmp_path, proto.SerializeToString(), **_splits())
    with pytest.raises(ValueError, match="fixed batch size of 1: export it with a dynamic"):
        _task(model, data)


def test_channel_pruning_finds_the_residual_group_of_a_converted_graph() -> None:
    """torch-pruning sees through the converted module: conv1 and the residual block's
    convolution add up, so they lose channels together, and the result still exports."""
    from spaces.structured import prunable_groups, prune_channels

    converted = convert(export(_trained_looking(ResidualCNN()), dynamo=False))
    example = _inputs(ResidualCNN(), 2)
    groups = prunable_groups(converted, example)
    assert groups["conv1"] == ["conv1", "block.0"]
    kept = prune_channels(converted, {"conv1": 0.25}, example)
    assert kept == {"conv1": 6}
    assert converted.get_submodule("block.0").weight.shape[:2] == (6, 6)
    inputs = _inputs(ResidualCNN(), 3)
    again = to_onnx(converted, _inputs(ResidualCNN(), 1), int8=False)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(again, inputs), converted(*inputs).numpy(), atol=2e-6)
