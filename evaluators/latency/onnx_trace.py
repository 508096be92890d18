"""ONNX Runtime's view of a candidate: the nodes of its optimized graph, each timeable alone.

ONNX Runtime rewrites a model before running it: Q/DQ pairs around a Conv or Gemm become one
``QLinearConv`` / ``QGemm`` integer kernel, a Conv followed by a Relu becomes one fused node,
channels-blocked (``nchwc``) kernels replace convolutions and pooling with layout reorders
between them. The graph it runs is therefore not the exported graph, and a lookup table of
``runtime = "onnxruntime"`` must hold the nodes of the *optimized* graph. This module:

1. exports the candidate as the latency runtime does (:func:`spaces.deploy.to_onnx`, int8
   QDQ for 8-bit layers) and lets ONNX Runtime optimize it with the study's thread count,
   saving the optimized graph;
2. runs that graph once with every intermediate tensor exposed, to learn each node's input
   shapes and types (and keep real inputs to time it with);
3. turns each node into a one-node model (its constant inputs, such as weights, stay
   initializers, so kernels pre-pack them as in the whole model), keyed by operator, domain,
   attributes and input shapes; timing it runs that model in its own session.

The optimized graph may hold hardware-specific nodes (``nchwc``); tables are per machine, so
that is what a table should hold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluators.latency.tracing import OpCall, Trace, time_call
from spaces.deploy import to_onnx


def _session(
    model_bytes: bytes, threads: int, *, optimize: bool, save_to: Path | None = None
) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def optimized_graph(model: nn.Module, batch: tuple[torch.Tensor, ...], threads: int) -> Any:
    """The ONNX graph ONNX Runtime runs for ``model`` (an ``onnx.ModelProto``)."""
    import onnx

    data = to_onnx(model.eval(), batch, int8=True, kernels_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        _session(data, threads, optimize=True, save_to=path)
        return onnx.load(str(path))


def _values(proto: Any, feeds: dict[str, np.ndarray], threads: int) -> dict[str, np.ndarray]:
    """Every tensor of the graph, computed once (the graph run with all of them as outputs)."""
    import onnx

    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    session = _session(exposed.SerializeToString(), threads, optimize=False)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True)) | feeds


def _describe(array: np.ndarray, const: bool) -> str:
    return f"{'C' if const else 'T'}{list(array.shape)}{array.dtype}"


def _attributes(node: Any) -> str:
    import onnx

    parts = []
    for attr in sorted(node.attribute, key=lambda a: a.name):
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        parts.append(f"{attr.name}={value!r}"[:80])
    return ",".join(parts)


def _single_node_model(
    proto: Any, node: Any, values: dict[str, np.ndarray], inits: dict[str, Any]
) -> tuple[bytes, dict[str, np.ndarray]]:
    """``node`` as a model of its own and the feeds to run it with."""
    from onnx import helper

    inputs, feeds, constants = [], {}, []
    for name in node.input:
        if not name or name in feeds:
            continue
        if name in inits:
            constants.append(inits[name])
            continue
        array = values[name]
        elem = helper.np_dtype_to_tensor_dtype(array.dtype)
        inputs.append(helper.make_tensor_value_info(name, elem, list(array.shape)))
        feeds[name] = array
    outputs = []
    for name in node.output:
        if name:
            array = values[name]
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            outputs.append(helper.make_tensor_value_info(name, elem, list(array.shape)))
    graph = helper.make_graph([node], "op", inputs, outputs, initializer=constants)
    single = helper.make_model(graph, opset_imports=list(proto.opset_import))
    single.ir_version = proto.ir_version
    return single.SerializeToString(), feeds


def time_session(session: Any, feeds: dict[str, np.ndarray], *, budget_s: float) -> float:
    """Median milliseconds of one ``session.run``, timed in blocks of back-to-back runs."""
    return time_call(session.run, (None, feeds), {}, budget_s=budget_s)


class _NodeTimer:
    """Times one node alone, in a one-node session built anew for each timing (sessions of
    one graph differ, see :func:`evaluators.latency.measurement.measure`)."""

    def __init__(
        self,
        proto: Any,
        node: Any,
        values: dict[str, np.ndarray],
        inits: dict[str, Any],
        threads: int,
    ) -> None:
        self.args = (proto, node, values, inits)
        self.threads = threads

    def __call__(self, budget_s: float) -> float:
        data, feeds = _single_node_model(*self.args)
        return time_session(_session(data, self.threads, optimize=False), feeds, budget_s=budget_s)


def trace_onnx(model: nn.Module, batch: tuple[torch.Tensor, ...], threads: int) -> Trace:
    """The nodes ONNX Runtime runs for ``model`` on ``batch``, each a timeable :class:`OpCall`."""
    proto = optimized_graph(model, batch, threads)
    graph_inputs = [i.name for i in proto.graph.input]
    inits = {init.name: init for init in proto.graph.initializer}
    feeds = {
        name: t.numpy()
        for name, t in zip([n for n in graph_inputs if n not in inits], batch, strict=True)
    }
    values = _values(proto, feeds, threads)
    from onnx import numpy_helper

    ops = []
    for node in proto.graph.node:
        described = []
        for name in node.input:
            if not name:
                described.append("-")
            elif name in inits:
                described.append(_describe(numpy_helper.to_array(inits[name]), const=True))
            else:
                described.append(_describe(values[name], const=False))
        op = f"{node.domain or 'ai.onnx'}.{node.op_type}"
        key = f"{op}({','.join(described)}){{{_attributes(node)}}}"

        ops.append(OpCall(key, node.op_type, _NodeTimer(proto, node, values, inits, threads)))
    return Trace(ops=ops, module_calls=0)
