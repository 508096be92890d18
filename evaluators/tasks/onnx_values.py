"""Values flowing through a converted ONNX graph: tensors and *shape values*.

A shape value (:class:`Dims`) is a list of sizes read from a tensor's ``shape``: ``Shape``
gives one; ``Gather``, ``Slice``, ``Concat``, ``Unsqueeze``, ``Squeeze``, ``Cast`` and integer
arithmetic keep it one. That is what lets a graph compute a ``Reshape`` target from its
input's size and still export with a dynamic batch: under the tracing ONNX exporter the sizes
are traced values, not constants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Value = Any  # torch.Tensor | Dims | None


class Dims(list[Any]):
    """A shape value: sizes read from a tensor's shape (ints; 0-d tensors while the tracing
    exporter runs, which is how the sizes stay dynamic in the exported graph). ``scalar``:
    a single size (ONNX's rank-0 result of ``Gather`` with a scalar index)."""

    def __init__(self, items: Any = (), *, scalar: bool = False) -> None:
        super().__init__(items)
        self.scalar = scalar


Op = Callable[[list[Value], dict[str, Any]], tuple[Value, ...]]

#: ONNX TensorProto data types -> torch dtypes (those a converted graph may use).
DTYPES: dict[int, torch.dtype] = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


def ints(v: Value) -> list[Any]:
    """A constant or shape value as a list of ints (or traced sizes)."""
    if isinstance(v, list):
        return list(v)
    if isinstance(v, torch.Tensor):
        return [int(i) for i in v.reshape(-1).tolist()]
    return [int(v)]


def tensor(v: Value) -> torch.Tensor:
    """A value as a tensor (a shape value becomes an int64 vector)."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, Dims) and v.scalar:
        return torch.as_tensor(v[0], dtype=torch.int64)
    if isinstance(v, list) and any(isinstance(i, torch.Tensor) for i in v):
        return torch.stack([torch.as_tensor(i, dtype=torch.int64).reshape(()) for i in v])
    return torch.tensor(v, dtype=torch.int64)


def axes_of(args: list[Value], attrs: dict[str, Any], index: int) -> list[int] | None:
    """Axes from input ``index`` (newer opsets) or the ``axes`` attribute (older ones)."""
    if len(args) > index and args[index] is not None:
        return ints(args[index])
    axes = attrs.get("axes")
    return list(axes) if axes is not None else None
