"""An ONNX graph as a PyTorch module the search can compress.

:func:`convert` turns an ``onnx.ModelProto`` into an :class:`OnnxModule`:

- constants are folded first: every node whose inputs are all constants (``Constant``,
  initializers, a transposed or dequantized weight, a reshape target) is computed once;
- ``Conv`` with a constant 1-D or 2-D kernel becomes ``nn.Conv1d`` / ``nn.Conv2d``, ``Gemm``
  with a constant weight ``nn.Linear``, and ``MatMul`` by a constant matrix ``nn.Linear``
  (without bias, or with the bias of an ``Add`` that only consumes it): these are the layers
  the search quantizes and prunes, named after the graph (:mod:`evaluators.tasks.onnx_names`);
- every other node runs as a torch function from :data:`evaluators.tasks.onnx_ops.OPS`, in
  the graph's order.

The module's forward takes the graph's inputs (those that are not initializers), in order,
and returns one output tensor. It traces cleanly, so the search's ONNX export (the legacy
TorchScript exporter) writes it back with a dynamic batch. Operators of the default domain
are read by their opset's meaning (tests: opsets 6 to 20); an operator outside
:data:`~evaluators.tasks.onnx_ops.OPS` (or of another domain) raises
:class:`UnsupportedOperator` naming the operator and the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluators.tasks import onnx_names
from evaluators.tasks.onnx_nn_ops import pool_pads, symmetric, torch_pads
from evaluators.tasks.onnx_ops import OPS
from evaluators.tasks.onnx_values import tensor

#: Int constants up to this many elements (shapes, axes, indices) stay plain tensors outside
#: the state dict; larger ones and float ones are buffers (they travel with the model).
_STATIC_MAX = 64


class UnsupportedOperator(ValueError):
    """The graph has a node the converter cannot run."""

    def __init__(self, op: str, node: str, reason: str = "") -> None:
        self.op, self.node = op, node
        why = f": {reason}" if reason else ""
        super().__init__(f"operator {op} (node {node!r}) is not supported{why}")


@dataclass(frozen=True)
class Step:
    """One node of the converted graph: an operator, or a layer module (``layer``)."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    node: str = ""


class OnnxModule(nn.Module):
    """A converted ONNX graph: layer modules plus the steps that connect them."""

    def __init__(
        self,
        *,
        inputs: list[str],
        output: str,
        steps: list[Step],
        layers: Mapping[str, nn.Module],
        constants: Mapping[str, torch.Tensor],
    ) -> None:
        super().__init__()
        self.input_names = list(inputs)
        self.output_name = output
        self.steps = list(steps)
        for name, layer in layers.items():
            onnx_names.attach(self, name, layer)
        self.constants = nn.Module()
        self._buffers_of: dict[str, str] = {}
        self._static: dict[str, torch.Tensor] = {}
        for i, (name, value) in enumerate(constants.items()):
            if not value.is_floating_point() and value.numel() <= _STATIC_MAX:
                self._static[name] = value
            else:
                self.constants.register_buffer(f"c{i}", value)
                self._buffers_of[name] = f"c{i}"

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"the model takes {len(self.input_names)} input(s) {self.input_names}, "
                f"got {len(inputs)}"
            )
        env: dict[str, Any] = dict(zip(self.input_names, inputs, strict=True))
        device = inputs[0].device if inputs else torch.device("cpu")
        if device.type == "cpu":
            env.update(self._static)
        else:  # small int constants live outside the state dict: follow the inputs
            env.update({k: v.to(device) for k, v in self._static.items()})
        for name, buffer in self._buffers_of.items():
            env[name] = getattr(self.constants, buffer)
        for step in self.steps:
            args = [env[n] if n else None for n in step.inputs]
            if step.layer is not None:
                outs: tuple[Any, ...] = (self._layer(step, tensor(args[0])),)
            else:
                outs = OPS[step.op](args, {**step.attrs})
            for name, value in zip(step.outputs, outs, strict=False):
                if name:
                    env[name] = value
        out = env[self.output_name]
        return tensor(out)

    def _layer(self, step: Step, x: torch.Tensor) -> torch.Tensor:
        layer = self.get_submodule(step.layer or "")
        if step.op == "Conv" and step.attrs.get("pad_at_run_time"):
            pads = pool_pads(x, dict(step.attrs), list(step.attrs["kernel"]))
            if any(pads):
                x = torch.nn.functional.pad(x, torch_pads(pads))
        if step.op == "Gemm" and step.attrs.get("transA"):
            x = x.T
        out: torch.Tensor = layer(x)
        return out


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper, numpy_helper

    attrs: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise UnsupportedOperator(node.op_type, node.name, "it holds a subgraph")
        value = helper.get_attribute_value(a)
        if a.type == AttributeProto.TENSOR:
            value = torch.from_numpy(np.array(numpy_helper.to_array(value)))
        attrs[a.name] = value
    return attrs


def _constant_value(node: Any, attrs: Mapping[str, Any]) -> torch.Tensor:
    for key, dtype in (
        ("value", None),
        ("value_float", torch.float32),
        ("value_floats", torch.float32),
        ("value_int", torch.int64),
        ("value_ints", torch.int64),
    ):
        if key in attrs:
            v = attrs[key]
            return v if dtype is None else torch.tensor(v, dtype=dtype)
    raise UnsupportedOperator("Constant", node.name, "only tensor and number values")


def _fold(op: str, node: Any, args: list[Any], attrs: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return OPS[op](args, attrs)
    except Exception as exc:
        raise UnsupportedOperator(op, node.name, f"folding its constants failed ({exc})") from None


def opset_of(model: Any) -> int:
    """The model's opset of the default ONNX domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def convert(model: Any, *, output: str | None = None) -> OnnxModule:
    """The ONNX model as an :class:`OnnxModule` computing its output ``output`` (default: the
    first graph output).

    Raises:
        UnsupportedOperator: a node the converter cannot run.
        ValueError: ``output`` is not a graph output, or the output is a constant.
    """
    from onnx import numpy_helper

    graph = model.graph
    opset = opset_of(model)
    consts: dict[str, torch.Tensor] = {
        i.name: torch.from_numpy(np.array(numpy_helper.to_array(i))) for i in graph.initializer
    }
    origin = {name: name for name in consts}  # the initializer a folded constant came from
    inputs = [i.name for i in graph.input if i.name not in consts]
    runtime: list[tuple[Any, dict[str, Any]]] = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperator(f"{node.domain}.{node.op_type}", node.name)
        attrs = _attributes(node)
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant_value(node, attrs)
            continue
        if node.op_type not in OPS:
            raise UnsupportedOperator(node.op_type, node.name)
        attrs["_opset"], attrs["_outputs"] = opset, len(node.output)
        if node.input and all(not n or n in consts for n in node.input):
            args = [consts[n] if n else None for n in node.input]
            for name, value in zip(
                node.output, _fold(node.op_type, node, args, attrs), strict=False
            ):
                if name:
                    consts[name] = tensor(value)
                    origin[name] = next((origin[n] for n in node.input if n in origin), name)
            continue
        runtime.append((node, attrs))
    outputs = [o.name for o in graph.output]
    chosen = output if output is not None else outputs[0]
    if chosen not in outputs:
        raise ValueError(f"{chosen!r} is not an output of the graph; its outputs: {outputs}")
    if chosen in consts:
        raise ValueError(f"the graph's output {chosen!r} is a constant")
    return _build(runtime, consts, origin, inputs, chosen, outputs)


def _build(
    runtime: list[tuple[Any, dict[str, Any]]],
    consts: dict[str, torch.Tensor],
    origin: dict[str, str],
    inputs: list[str],
    output: str,
    graph_outputs: list[str],
) -> OnnxModule:
    consumers: dict[str, list[Any]] = {}
    for node, _ in runtime:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    namer = onnx_names.LayerNamer()
    steps: list[Step] = []
    layers: dict[str, nn.Module] = {}
    fused: set[int] = set()
    for node, attrs in runtime:
        if id(node) in fused:
            continue
        made = _layer(node, attrs, consts)
        if made is None:
            steps.append(
                Step(node.op_type, tuple(node.input), tuple(node.output), attrs, None, node.name)
            )
            continue
        layer, step_attrs = made
        out = node.output[0]
        if node.op_type == "MatMul":
            bias_add = _bias_add(out, consumers, consts, layer, graph_outputs)
            if bias_add is not None:
                add, bias = bias_add
                fused.add(id(add))
                layer = _with_bias(layer, bias)
                out = add.output[0]
        name = namer.name(origin.get(node.input[1], ""), node.name, node.op_type)
        layers[name] = layer
        steps.append(Step(node.op_type, (node.input[0],), (out,), step_attrs, name, node.name))
    used = {n for s in steps for n in s.inputs} | {output}
    kept = {n: v for n, v in consts.items() if n in used}
    return OnnxModule(inputs=inputs, output=output, steps=steps, layers=layers, constants=kept)


def _layer(
    node: Any, attrs: dict[str, Any], consts: Mapping[str, torch.Tensor]
) -> tuple[nn.Module, dict[str, Any]] | None:
    """The layer module for a Conv / Gemm / MatMul with a constant weight, else ``None``."""
    ins = list(node.input)
    if len(ins) < 2 or ins[1] not in consts or not consts[ins[1]].is_floating_point():
        return None
    w = consts[ins[1]].float()
    bias = consts.get(ins[2]) if len(ins) > 2 and ins[2] else None
    if len(ins) > 2 and ins[2] and bias is None:
        return None  # a bias computed at run time: keep the functional form
    if node.op_type == "Conv" and w.dim() in (3, 4):
        return _conv(w, bias, attrs)
    if node.op_type == "Gemm" and w.dim() == 2:
        weight = (w if attrs.get("transB", 0) else w.T) * attrs.get("alpha", 1.0)
        b = None
        if bias is not None:
            if bias.numel() not in (1, weight.shape[0]):
                return None
            b = (bias.float() * attrs.get("beta", 1.0)).reshape(-1).expand(weight.shape[0])
        linear = _linear(weight, b)
        return linear, {"transA": attrs.get("transA", 0)}
    if node.op_type == "MatMul" and w.dim() == 2:
        return _linear(w.T, None), {}
    return None


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _with_bias(layer: nn.Module, bias: torch.Tensor) -> nn.Linear:
    if not isinstance(layer, nn.Linear):  # pragma: no cover - only MatMul fuses a bias
        raise TypeError(type(layer).__name__)
    return _linear(layer.weight.detach(), bias.float().reshape(-1))


def _bias_add(
    out: str,
    consumers: Mapping[str, list[Any]],
    consts: Mapping[str, torch.Tensor],
    layer: nn.Module,
    graph_outputs: list[str],
) -> tuple[Any, torch.Tensor] | None:
    """The ``Add`` of a constant vector that alone consumes a MatMul's output, and the vector."""
    users = consumers.get(out, [])
    if len(users) != 1 or users[0].op_type != "Add" or out in graph_outputs:
        return None
    add = users[0]
    other = [n for n in add.input if n != out]
    if len(other) != 1 or other[0] not in consts:
        return None
    bias = consts[other[0]]
    n = layer.weight.shape[0] if isinstance(layer, nn.Linear) else -1
    if not bias.is_floating_point() or bias.numel() != n or bias.shape[-1] != n:
        return None
    return add, bias


def _conv(
    w: torch.Tensor, bias: torch.Tensor | None, attrs: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    n = w.dim() - 2
    kernel = list(w.shape[2:])
    groups = attrs.get("group", 1)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    pads = list(attrs.get("pads", [0] * 2 * n)) if auto != "VALID" else [0] * 2 * n
    same = symmetric(pads) if auto in ("NOTSET", "VALID") else None
    cls = nn.Conv1d if n == 1 else nn.Conv2d
    layer = cls(
        w.shape[1] * groups,
        w.shape[0],
        kernel,  # type: ignore[arg-type]
        stride=list(attrs.get("strides", [1] * n)),  # type: ignore[arg-type]
        padding=same if same is not None else 0,  # type: ignore[arg-type]
        dilation=list(attrs.get("dilations", [1] * n)),  # type: ignore[arg-type]
        groups=groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None and layer.bias is not None:
            layer.bias.copy_(bias.float())
    step_attrs: dict[str, Any] = {"kernel": kernel}
    if same is None:
        step_attrs.update(
            pad_at_run_time=True,
            auto_pad=auto,
            pads=pads,
            strides=list(attrs.get("strides", [1] * n)),
            dilations=list(attrs.get("dilations", [1] * n)),
        )
    return layer, step_attrs
