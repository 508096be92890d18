"""The ONNX operators the converter runs, each as a function of torch values.

Each operator is ``fn(args, attrs) -> tuple of outputs``; ``args`` are the node's inputs
(``None`` for an omitted optional input; values are tensors or shape values,
:mod:`evaluators.tasks.onnx_values`), ``attrs`` its attributes plus ``"_opset"``, the graph's
opset of the default domain (a few operators changed meaning across versions), and
``"_outputs"``, its number of outputs. The neural-network operators live in
:mod:`evaluators.tasks.onnx_nn_ops`; :data:`OPS` is the table of all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from evaluators.tasks import onnx_nn_ops as nn_ops
from evaluators.tasks.onnx_values import DTYPES, Dims, Op, Value, axes_of, ints, tensor


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    return lambda args, attrs: (fn(tensor(args[0])),)


def _shape_arith(a: Value, b: Value, fn: Callable[[Any, Any], Any]) -> Value:
    """Arithmetic on shape values stays a shape value (one element or elementwise)."""
    if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.numel() > 8):
        return None
    if isinstance(b, torch.Tensor) and (b.is_floating_point() or b.numel() > 8):
        return None
    scalar = all((isinstance(v, Dims) and v.scalar) or _is_scalar(v) for v in (a, b))
    x, y = ints(a), ints(b)
    if len(x) == 1:
        x = x * len(y)
    if len(y) == 1:
        y = y * len(x)
    return Dims([fn(i, j) for i, j in zip(x, y, strict=True)], scalar=scalar)


def _is_scalar(v: Value) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 0


def _binary(fn: Callable[[Any, Any], Any]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        a, b = args[0], args[1]
        if isinstance(a, Dims) or isinstance(b, Dims):
            shaped = _shape_arith(a, b, fn)
            if shaped is not None:
                return (shaped,)
        return (fn(tensor(a), tensor(b)),)

    return op


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(a, torch.Tensor) and not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _variadic(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        out = tensor(args[0])
        for a in args[1:]:
            out = fn(out, tensor(a))
        return (out,)

    return op


def _mean(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    return (_variadic(torch.add)(args, attrs)[0] / len(args),)


def _clip(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    return (torch.clamp(x, low, high),)


def _flatten(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    if axis == 0:
        return (x.reshape(1, -1),)
    if axis == 1:
        return (x.flatten(1) if x.dim() > 1 else x[:, None],)
    return (x.flatten(axis).flatten(0, axis - 1) if x.dim() > axis else x.flatten(0, -1)[:, None],)


def _reshape(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    shape = ints(args[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if isinstance(s, int) and s == 0 else s for i, s in enumerate(shape)]
    return (x.reshape(shape),)


def _transpose(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    perm = attrs.get("perm") or list(reversed(range(x.dim())))
    return (x.permute(*perm),)


def _concat(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    parts = [a for a in args if a is not None]
    if (
        any(isinstance(a, Dims) for a in parts)
        and attrs.get("axis", 0) in (0, -1)
        and all(isinstance(a, Dims) or a.dim() <= 1 for a in parts)
    ):
        return (Dims(i for a in parts for i in ints(a)),)
    tensors = [tensor(a) for a in parts]
    tensors = [t for t in tensors if t.numel() or t.dim() != 1]
    return (torch.cat(tensors, dim=attrs["axis"]),)


def _squeeze(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    axes = axes_of(args, attrs, 1)
    if isinstance(args[0], Dims):
        return (Dims(args[0], scalar=len(args[0]) == 1),)
    x = tensor(args[0])
    if axes is None:
        return (x.squeeze(),)
    # one axis at a time, last first: the tracing exporter reads a single squeeze dim only
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return (x,)


def _unsqueeze(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    axes = axes_of(args, attrs, 1) or []
    if isinstance(args[0], Dims):
        return (Dims(args[0]),)
    x = tensor(args[0])
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return (x,)


def _shape(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    dims = list(tensor(args[0]).shape)
    rank = len(dims)
    start = attrs.get("start", 0)
    end = attrs.get("end", rank)
    return (
        Dims(dims[start % (rank + 1) if start < 0 else start : end if end >= 0 else rank + end]),
    )


def _gather(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    data, index = args[0], args[1]
    axis = attrs.get("axis", 0)
    if isinstance(data, Dims):
        return (Dims([data[i] for i in ints(index)], scalar=_is_scalar(index)),)
    x, idx = tensor(data), tensor(index).long()
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = x.index_select(axis, idx.reshape(-1))
    shape = [*x.shape[:axis], *idx.shape, *x.shape[axis % x.dim() + 1 :]]
    return (out.reshape(shape),)


def _slice(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    data = args[0]
    if attrs["_opset"] < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = ints(args[1]), ints(args[2])
        axes = ints(args[3]) if len(args) > 3 and args[3] is not None else None
        steps = ints(args[4]) if len(args) > 4 and args[4] is not None else None
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    if isinstance(data, Dims):
        return (Dims(data[_bounded(starts[0], ends[0], steps[0])]),)
    x = tensor(data)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step < 0:  # torch slices forwards only: pick the rows (Python's slice rules = ONNX's)
            rows = list(range(int(x.shape[axis])))[_bounded(start, end, step)]
            x = x.index_select(
                axis % x.dim(), torch.tensor(rows, dtype=torch.long, device=x.device)
            )
            continue
        index[axis % x.dim()] = _bounded(start, end, step)
    return (x[tuple(index)],)


def _bounded(start: int, end: int, step: int) -> slice:
    """A Python slice for ONNX bounds, which may be beyond the int range of the axis."""
    big = 2**62
    return slice(max(min(start, big), -big), max(min(end, big), -big), step)


def _split(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    axis = attrs.get("axis", 0)
    sizes = args[1] if len(args) > 1 and args[1] is not None else attrs.get("split")
    if sizes is not None:
        return tuple(torch.split(x, ints(sizes), dim=axis))
    n = attrs.get("num_outputs") or attrs["_outputs"]
    return tuple(torch.tensor_split(x, n, dim=axis)) if x.shape[axis] % n else x.chunk(n, axis)


def _reduce(fn: Callable[..., torch.Tensor]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        x = tensor(args[0])
        axes = axes_of(args, attrs, 1)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return (x,)
            axes = list(range(x.dim()))
        return (fn(x, tuple(a % x.dim() for a in axes), keep),)

    return op


def _reduce_max(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    return torch.amax(x, dim=dims, keepdim=keep)


def _reduce_min(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    return torch.amin(x, dim=dims, keepdim=keep)


def _arg(fn: Callable[..., torch.Tensor]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        keep = bool(attrs.get("keepdims", 1))
        return (fn(tensor(args[0]), dim=attrs.get("axis", 0), keepdim=keep),)

    return op


def _cast(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    if isinstance(args[0], Dims) and DTYPES[attrs["to"]] in (torch.int64, torch.int32):
        return (args[0],)
    return (tensor(args[0]).to(DTYPES[attrs["to"]]),)


def _where(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    return (torch.where(tensor(args[0]).bool(), tensor(args[1]), tensor(args[2])),)


def _expand_op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    shape = ints(args[1])
    rank = max(x.dim(), len(shape))
    shape = [1] * (rank - len(shape)) + shape
    dims = [1] * (rank - x.dim()) + list(x.shape)
    target = [d if s == 1 else s for s, d in zip(shape, dims, strict=True)]
    return (x.reshape(dims).expand(target),)


def _tile(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    return (tensor(args[0]).repeat(*ints(args[1])),)


def _constant_of_shape(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    value = attrs.get("value")
    fill = value if isinstance(value, torch.Tensor) else torch.zeros(1)
    return (torch.full(ints(args[0]), fill.reshape(-1)[0].item(), dtype=fill.dtype),)


def _identity(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    return (args[0],)


def _dropout(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    return (x, torch.ones_like(x, dtype=torch.bool))


def _gelu(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    approx = attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return (F.gelu(tensor(args[0]), approximate=approx),)


def _prelu(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x, slope = tensor(args[0]), tensor(args[1])
    return (torch.where(x >= 0, x, x * slope),)


def _hard_sigmoid(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return (torch.clamp(alpha * x + beta, 0.0, 1.0),)


def _attr_unary(fn: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]) -> Op:
    return lambda args, attrs: (fn(tensor(args[0]), attrs),)


OPS: dict[str, Op] = {
    "Abs": _unary(torch.abs),
    "Add": _binary(lambda a, b: a + b),
    "And": _binary(torch.logical_and),
    "ArgMax": _arg(torch.argmax),
    "ArgMin": _arg(torch.argmin),
    "AveragePool": nn_ops.avg_pool,
    "BatchNormalization": nn_ops.batch_norm,
    "Cast": _cast,
    "Ceil": _unary(torch.ceil),
    "Celu": _attr_unary(lambda x, a: F.celu(x, a.get("alpha", 1.0))),
    "Clip": _clip,
    "Concat": _concat,
    "ConstantOfShape": _constant_of_shape,
    "Conv": nn_ops.conv,
    "Cos": _unary(torch.cos),
    "Div": _binary(_div),
    "Dropout": _dropout,
    "Elu": _attr_unary(lambda x, a: F.elu(x, a.get("alpha", 1.0))),
    "Equal": _binary(torch.eq),
    "Erf": _unary(torch.erf),
    "Exp": _unary(torch.exp),
    "Expand": _expand_op,
    "Flatten": _flatten,
    "Floor": _unary(torch.floor),
    "Gather": _gather,
    "Gelu": _gelu,
    "Gemm": nn_ops.gemm,
    "GlobalAveragePool": nn_ops.global_(torch.mean),
    "GlobalMaxPool": nn_ops.global_(torch.amax),
    "Greater": _binary(torch.gt),
    "GreaterOrEqual": _binary(torch.ge),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _unary(F.hardswish),
    "Identity": _identity,
    "InstanceNormalization": nn_ops.instance_norm,
    "LayerNormalization": nn_ops.layer_norm,
    "LeakyRelu": _attr_unary(lambda x, a: F.leaky_relu(x, a.get("alpha", 0.01))),
    "Less": _binary(torch.lt),
    "LessOrEqual": _binary(torch.le),
    "Log": _unary(torch.log),
    "LogSoftmax": nn_ops.softmax(torch.log_softmax),
    "MatMul": nn_ops.matmul,
    "Max": _variadic(torch.maximum),
    "MaxPool": nn_ops.max_pool,
    "Mean": _mean,
    "Min": _variadic(torch.minimum),
    "Mish": _unary(F.mish),
    "Mul": _binary(lambda a, b: a * b),
    "Neg": _unary(torch.neg),
    "Not": _unary(torch.logical_not),
    "Or": _binary(torch.logical_or),
    "Pad": nn_ops.pad,
    "Pow": _binary(torch.pow),
    "PRelu": _prelu,
    "Reciprocal": _unary(torch.reciprocal),
    "ReduceMax": _reduce(_reduce_max),
    "ReduceMean": _reduce(lambda x, d, k: torch.mean(x, dim=d, keepdim=k)),
    "ReduceMin": _reduce(_reduce_min),
    "ReduceSum": _reduce(lambda x, d, k: torch.sum(x, dim=d, keepdim=k)),
    "Relu": _unary(torch.relu),
    "Reshape": _reshape,
    "Selu": _unary(F.selu),
    "Shape": _shape,
    "Sigmoid": _unary(torch.sigmoid),
    "Sign": _unary(torch.sign),
    "Sin": _unary(torch.sin),
    "Slice": _slice,
    "Softmax": nn_ops.softmax(torch.softmax),
    "Softplus": _unary(F.softplus),
    "Softsign": _unary(F.softsign),
    "Split": _split,
    "Sqrt": _unary(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _binary(lambda a, b: a - b),
    "Sum": _variadic(torch.add),
    "Tanh": _unary(torch.tanh),
    "Tile": _tile,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Where": _where,
}
