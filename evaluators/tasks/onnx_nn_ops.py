"""The neural-network ONNX operators (convolution, pooling, normalisation, products) as
torch functions, for :data:`evaluators.tasks.onnx_ops.OPS`.

Conv / Gemm / MatMul with constant weights become layer modules in
:mod:`evaluators.tasks.onnx_convert`; the functions here run the other cases (a weight
computed at run time, a 3-D convolution).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from evaluators.tasks.onnx_values import Op, Value, ints, tensor


def softmax(fn: Callable[..., torch.Tensor]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        x = tensor(args[0])
        if attrs["_opset"] >= 13:
            return (fn(x, dim=attrs.get("axis", -1)),)
        # before opset 13: the input is seen as 2-D, [d0 .. d(axis-1)] x [d(axis) ..]
        axis = attrs.get("axis", 1) % x.dim()
        flat = x.flatten(axis).flatten(0, axis - 1) if axis > 0 else x.reshape(1, -1)
        return (fn(flat, dim=-1).reshape(x.shape),)

    return op


def batch_norm(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x, scale, bias, mean, var = (tensor(a) for a in args[:5])
    eps = attrs.get("epsilon", 1e-5)
    return (F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps),)


def instance_norm(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x, scale, bias = (tensor(a) for a in args[:3])
    return (F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5)),)


def layer_norm(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    axis = attrs.get("axis", -1) % x.dim()
    scale = tensor(args[1])
    bias = tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    # the normalised shape must be constant for the tracing exporter: the scale's when it fits
    shape = tuple(int(d) for d in x.shape[axis:])
    if tuple(scale.shape) == shape:
        shape = tuple(scale.shape)
    eps = attrs.get("epsilon", 1e-5)
    return (F.layer_norm(x, shape, scale.expand(shape), _expand(bias, shape), eps),)


def _expand(t: torch.Tensor | None, shape: Sequence[int]) -> torch.Tensor | None:
    return t.expand(tuple(shape)) if t is not None else None


def pool_pads(x: torch.Tensor, attrs: dict[str, Any], kernel: list[int]) -> list[int]:
    """ONNX pads (begin..., end...) of a pooling or convolution, with ``auto_pad`` resolved."""
    n = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", "VALID"):
        return list(attrs.get("pads", [0] * 2 * n)) if auto == "NOTSET" else [0] * 2 * n
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    begin, end = [], []
    for size, k, s, d in zip(x.shape[-n:], kernel, strides, dilations, strict=True):
        total = max((math.ceil(int(size) / s) - 1) * s + (k - 1) * d + 1 - int(size), 0)
        low = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(low)
        end.append(total - low)
    return begin + end


def torch_pads(pads: list[int]) -> list[int]:
    """ONNX (begin..., end...) pads as F.pad's (last axis first) list."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def symmetric(pads: list[int]) -> list[int] | None:
    """The per-axis padding when begin equals end on every axis, else ``None``."""
    n = len(pads) // 2
    return pads[:n] if pads[:n] == pads[n:] else None


def max_pool(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    pads = pool_pads(x, attrs, kernel)
    same = symmetric(pads)
    if same is None:
        x = F.pad(x, torch_pads(pads), value=-math.inf)
        same = [0] * n
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    out = fn(
        x,
        kernel,
        stride=list(attrs.get("strides", [1] * n)),
        padding=same,
        dilation=list(attrs.get("dilations", [1] * n)),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )
    return (out,)


def avg_pool(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    pads = pool_pads(x, attrs, kernel)
    include = bool(attrs.get("count_include_pad", 0))
    same = symmetric(pads)
    if same is None or any(2 * p > k for p, k in zip(same, kernel, strict=True)):
        if not include and any(pads):
            raise ValueError(
                "AveragePool with asymmetric padding that excludes the pad is not supported."
            )
        x = F.pad(x, torch_pads(pads))
        same = [0] * n
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    out = fn(
        x,
        kernel,
        stride=list(attrs.get("strides", [1] * n)),
        padding=same,
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=include,
    )
    return (out,)


def global_(fn: Callable[..., torch.Tensor]) -> Op:
    def op(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
        x = tensor(args[0])
        return (fn(x, dim=tuple(range(2, x.dim())), keepdim=True),)

    return op


def conv(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    """A convolution whose weight is computed at run time (not a constant)."""
    x, w = tensor(args[0]), tensor(args[1])
    bias = tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    n = w.dim() - 2
    pads = pool_pads(x, attrs, list(w.shape[2:]))
    same = symmetric(pads)
    if same is None:
        x = F.pad(x, torch_pads(pads))
        same = [0] * n
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    out = fn(
        x,
        w,
        bias,
        stride=list(attrs.get("strides", [1] * n)),
        padding=same,
        dilation=list(attrs.get("dilations", [1] * n)),
        groups=attrs.get("group", 1),
    )
    return (out,)


def gemm(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    a, b = tensor(args[0]), tensor(args[1])
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    out = attrs.get("alpha", 1.0) * (a @ b)
    if len(args) > 2 and args[2] is not None:
        out = out + attrs.get("beta", 1.0) * tensor(args[2])
    return (out,)


def matmul(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    return (torch.matmul(tensor(args[0]), tensor(args[1])),)


def pad(args: list[Value], attrs: dict[str, Any]) -> tuple[Value, ...]:
    x = tensor(args[0])
    pads = ints(args[1]) if len(args) > 1 and args[1] is not None else list(attrs["pads"])
    value = args[2] if len(args) > 2 and args[2] is not None else attrs.get("value", 0.0)
    value = float(tensor(value).reshape(-1)[0]) if isinstance(value, torch.Tensor) else value
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    axes = ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(x.dim()))
    n = len(axes)
    per_axis = {a % x.dim(): (pads[i], pads[i + n]) for i, a in enumerate(axes)}
    torch_pads: list[int] = []
    for axis in reversed(range(x.dim())):
        torch_pads += per_axis.get(axis, (0, 0))
    while torch_pads[-2:] == [0, 0] and len(torch_pads) > 2:
        torch_pads = torch_pads[:-2]
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    if torch_mode == "constant":
        return (F.pad(x, torch_pads, value=value),)
    return (F.pad(x, torch_pads, mode=torch_mode),)
