"""Exact rewrites of an exported QDQ graph, so ONNX Runtime runs integer kernels back to back.

The legacy exporter writes each 8-bit activation as ``QuantizeLinear`` -> ``Clip`` (codes
0-127, :data:`spaces.activations.QMAX`) -> ``DequantizeLinear``. Between two integer layers
this leaves float work that ONNX Runtime does not remove: the activation function, a
``Pad`` (TensorFlow "SAME" padding), and dequantize / quantize pairs kept apart by the
``Clip`` on the codes. :func:`simplify` rewrites them, each rewrite computing exactly the same
numbers:

- a ``Clip`` / ``Relu`` after a ``DequantizeLinear`` whose every value, ``(q - z) * s`` in
  float32 for the codes its input allows, lies in the bounds is removed (a ReLU6 after a layer
  whose range was calibrated on it, :func:`spaces.activations.clipping_activations`);
- ``DequantizeLinear`` -> ``QuantizeLinear`` with equal scalar scale and zero point is the
  identity on codes: the quantize's readers read the codes;
- ``DequantizeLinear`` -> ``Pad`` (constant 0) -> ``QuantizeLinear`` with equal parameters is
  a ``Pad`` of the codes with the zero point;
- a ``Clip`` on codes already within its bounds (after the same ``Clip``, or such a ``Pad``)
  is removed;
- a ``Pad`` of codes with the zero point, dequantized and read by a ``Conv`` only, becomes the
  ``Conv``'s own zero padding (its ``pads``; the pad amounts are evaluated when they are
  computed from constants);
- nodes nobody reads any more are removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Graph:
    """Look-ups over an ONNX graph: producers, readers, constant values."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.values: dict[str, np.ndarray] = {
            init.name: np.asarray(numpy_helper.to_array(init)) for init in graph.initializer
        }
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = np.asarray(numpy_helper.to_array(attr.t))
        self.refresh()

    def refresh(self) -> None:
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.readers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}

    def constant(self, node: Any, i: int) -> np.ndarray | None:
        """Input ``i`` of ``node`` when it is a constant (``None`` when absent or computed)."""
        if len(node.input) <= i or not node.input[i]:
            return None
        return self.values.get(node.input[i])

    def qparams(self, node: Any) -> tuple[np.float32, np.ndarray] | None:
        """Scalar ``(scale, zero_point)`` of a (De)QuantizeLinear, ``None`` otherwise."""
        scale, zero = self.constant(node, 1), self.constant(node, 2)
        if scale is None or zero is None or scale.size != 1 or zero.size != 1:
            return None
        return np.float32(scale.reshape(())), zero.reshape(())

    def made_by(self, name: str, op: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def redirect(self, old: str, new: str) -> None:
        """Every reader of ``old`` reads ``new`` (``old`` must not be a graph output)."""
        for node in self.readers.get(old, []):
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new


def simplify(graph: Any) -> None:
    """Apply the rewrites of this module to ``graph`` in place (see the module docstring)."""
    g = _Graph(graph)
    for node in list(graph.node):
        if node.op_type in ("Clip", "Relu") and _clip_is_identity(g, node):
            g.redirect(node.output[0], node.input[0])
    g.refresh()
    for node in list(graph.node):
        if node.op_type == "QuantizeLinear" and node.output[0] not in g.outputs:
            _bypass_requantize(g, node)
    g.refresh()
    for node in list(graph.node):
        if node.op_type == "Clip" and node.output[0] not in g.outputs:
            bounds = _code_bounds(g, node.input[0])
            if bounds is not None and _clip_contains(g, node, bounds):
                g.redirect(node.output[0], node.input[0])
                g.refresh()
    _drop_unread(g)  # the bypassed nodes still read what the fold below checks
    for node in list(graph.node):
        if node.op_type == "Conv":
            _fold_pad(g, node)
    _drop_unread(g)


def _bounds_of(g: _Graph, node: Any) -> tuple[float, float] | None:
    """The bounds of a ``Clip`` / ``Relu`` with constant bounds, ``None`` otherwise."""
    if node.op_type == "Relu":
        return 0.0, float("inf")
    out = [-float("inf"), float("inf")]
    for i in (1, 2):
        if len(node.input) > i and node.input[i]:
            value = g.constant(node, i)
            if value is None or value.size != 1:
                return None
            out[i - 1] = float(value.reshape(()))
    return out[0], out[1]


def _clip_contains(g: _Graph, node: Any, bounds: tuple[float, float]) -> bool:
    own = _bounds_of(g, node)
    return own is not None and own[0] <= bounds[0] and bounds[1] <= own[1]


def _code_bounds(g: _Graph, name: str) -> tuple[float, float] | None:
    """Bounds the integer codes ``name`` are known to lie in (a ``Clip`` or a padded one)."""
    node = g.producer.get(name)
    if node is None:
        return None
    if node.op_type == "Clip":
        return _bounds_of(g, node)
    if node.op_type == "Pad":
        inner = _code_bounds(g, node.input[0])
        fill = g.constant(node, 2)
        value = 0.0 if fill is None else float(fill.reshape(()))
        if inner is not None and inner[0] <= value <= inner[1] and _constant_mode(node):
            return inner
    return None


def _clip_is_identity(g: _Graph, node: Any) -> bool:
    """``node`` (a float ``Clip`` / ``Relu``) cannot change the ``DequantizeLinear`` before it."""
    if node.output[0] in g.outputs:
        return False
    dq = g.made_by(node.input[0], "DequantizeLinear")
    if dq is None:
        return False
    params, bounds = g.qparams(dq), _bounds_of(g, node)
    if params is None or bounds is None or params[1].dtype != np.uint8:
        return False
    scale, zero = params
    codes = _code_bounds(g, dq.input[0]) or (0.0, 255.0)
    first, last = max(codes[0], 0.0), min(codes[1], 255.0)
    low = np.float32(int(np.ceil(first)) - int(zero)) * scale
    high = np.float32(int(np.floor(last)) - int(zero)) * scale
    return bool(bounds[0] <= low and high <= bounds[1])


def _constant_mode(pad: Any) -> bool:
    modes = [a.s for a in pad.attribute if a.name == "mode"]
    return not modes or modes[0] == b"constant"


def _same(a: tuple[np.float32, np.ndarray] | None, b: tuple[np.float32, np.ndarray] | None) -> bool:
    return (
        a is not None
        and b is not None
        and a[0] == b[0]
        and a[1].dtype == b[1].dtype
        and int(a[1]) == int(b[1])
    )


def _bypass_requantize(g: _Graph, q: Any) -> None:
    """Rewrite ``DequantizeLinear`` (-> ``Pad``) -> ``q`` with equal parameters on codes."""
    from onnx import numpy_helper

    params = g.qparams(q)
    dq = g.made_by(q.input[0], "DequantizeLinear")
    if dq is not None:
        if _same(g.qparams(dq), params):
            g.redirect(q.output[0], dq.input[0])
        return
    pad = g.made_by(q.input[0], "Pad")
    if pad is None or not _constant_mode(pad) or len(g.readers.get(pad.output[0], [])) != 1:
        return
    fill = g.constant(pad, 2)
    dq = g.made_by(pad.input[0], "DequantizeLinear")
    if (fill is not None and float(fill.reshape(())) != 0.0) or dq is None:
        return
    if not _same(g.qparams(dq), params) or params is None:
        return
    name = f"{pad.output[0]}.zero_point"
    g.graph.initializer.append(numpy_helper.from_array(params[1].copy(), name))
    g.values[name] = params[1]
    pad.input[0] = dq.input[0]
    while len(pad.input) < 3:
        pad.input.append("")
    pad.input[2] = name
    for info in list(g.graph.value_info):
        if info.name == pad.output[0]:
            g.graph.value_info.remove(info)
    g.redirect(q.output[0], pad.output[0])


def _drop_unread(g: _Graph) -> None:
    """Remove nodes none of whose outputs is read or is a graph output."""
    while True:
        g.refresh()
        dead = [
            n for n in g.graph.node if not any(o in g.outputs or g.readers.get(o) for o in n.output)
        ]
        if not dead:
            return
        for node in dead:
            g.graph.node.remove(node)


def _static(g: _Graph, name: str) -> np.ndarray | None:
    """The value of ``name`` when it is computed from constants only (evaluated), else None."""
    if name in g.values:
        return g.values[name]
    import onnx
    from onnx.reference import ReferenceEvaluator

    nodes: list[Any] = []
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current in g.values or not current:
            continue
        seen.add(current)
        node = g.producer.get(current)
        if node is None:
            return None  # a graph input
        if node not in nodes:
            nodes.append(node)
            todo.extend(node.input)
    order = [n for n in g.graph.node if n in nodes]  # the graph's topological order
    needed = {i for n in order for i in n.input if i in g.values}
    inits = [onnx.numpy_helper.from_array(g.values[i], i) for i in sorted(needed)]
    out = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
    model = onnx.helper.make_model(
        onnx.helper.make_graph(order, "static", [], [out], inits),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
    )
    try:
        value = np.asarray(next(iter(ReferenceEvaluator(model).run(None, {}))))
    except Exception:  # an operator the reference runtime lacks: keep the Pad
        return None
    g.values[name] = value
    return value


def _fold_pad(g: _Graph, conv: Any) -> None:
    """``Pad`` (codes, the zero point) -> ``DequantizeLinear`` -> ``conv``: padding in ``conv``."""
    from onnx import helper

    dq = g.made_by(conv.input[0], "DequantizeLinear")
    if dq is None:
        return
    pad, params = g.made_by(dq.input[0], "Pad"), g.qparams(dq)
    if pad is None or params is None or not _constant_mode(pad) or len(pad.input) < 2:
        return
    if len(g.readers.get(dq.output[0], [])) != 1 or len(g.readers.get(pad.output[0], [])) != 1:
        return
    fill = g.constant(pad, 2)
    if fill is None or int(fill.reshape(())) != int(params[1]) or len(pad.input) > 3:
        return
    amounts = _static(g, pad.input[1])
    attrs = {a.name: a for a in conv.attribute}
    if amounts is None or ("auto_pad" in attrs and attrs["auto_pad"].s not in (b"NOTSET", b"")):
        return
    rank = amounts.size // 2
    begin, end = [int(v) for v in amounts[:rank]], [int(v) for v in amounts[rank:]]
    if rank < 3 or any(begin[:2]) or any(end[:2]) or min(begin + end) < 0:
        return
    spatial = rank - 2
    own = list(attrs["pads"].ints) if "pads" in attrs else [0] * (2 * spatial)
    pads = [own[i] + begin[2 + i] for i in range(spatial)]
    pads += [own[spatial + i] + end[2 + i] for i in range(spatial)]
    if "pads" in attrs:
        conv.attribute.remove(attrs["pads"])
    conv.attribute.append(helper.make_attribute("pads", pads))
    dq.input[0] = pad.input[0]
    g.refresh()
