"""What a forward pass runs, operator by operator, and timing one operator alone.

A small model on a CPU spends most of its time in per-call overhead, not in arithmetic: a
3x3 convolution over an 8x8 image costs microseconds of dispatch for a few thousand MACs. So
what predicts latency is the list of operators a forward pass calls, each with its own
shapes, plus the fixed cost of each module call. :func:`trace` records that list for the
torch runtimes (a ``TorchFunctionMode``), each call an :class:`OpCall` keyed by its name and
argument shapes (a ``linear`` on 64x512 by 64x512 is one key) and timeable alone
(:func:`time_call`, only in quiet moments of the machine, :mod:`evaluators.latency.quiet`).
ONNX Runtime's operators are traced by :mod:`evaluators.latency.onnx_trace` into the same
records.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from evaluators.latency.isolation import timing
from evaluators.latency.quiet import gate


@dataclass(frozen=True)
class OpCall:
    """One operator call of a forward pass, timeable on its own.

    Attributes:
        key: What the table stores it under: operator, argument shapes and settings.
        name: The operator's name, for breakdowns.
        measure: ``measure(budget_s)`` times the call alone and returns milliseconds.
    """

    key: str
    name: str
    measure: Callable[[float], float]


@dataclass(frozen=True)
class Trace:
    """What one forward pass does: its operator calls and its module calls."""

    ops: list[OpCall]
    module_calls: int


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        layout = "" if value.is_contiguous() else "~"
        return f"T{list(value.shape)}{str(value.dtype)[6:]}{layout}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    if isinstance(value, (int, float, bool, str, type(None))):
        return repr(value)[:40]
    return type(value).__name__


def _func_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__module__", None) or ""
    return f"{owner}.{name}" if owner else str(name)


def _frozen_copy(value: Any) -> Any:
    """Tensors copied as they were at call time (later in-place ops must not change them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [_frozen_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_frozen_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen_copy(v) for k, v in value.items()}
    return value


class _Recorder(TorchFunctionMode):
    """Records every top-level torch call (nested calls run with the mode switched off)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _func_name(func)
        key = f"{name}{_describe(args)}{_describe(tuple(sorted(kwargs.items())))}"
        frozen_args, frozen_kwargs = _frozen_copy(args), _frozen_copy(kwargs)

        def measure(budget_s: float) -> float:
            return time_call(func, frozen_args, frozen_kwargs, budget_s=budget_s)

        out = func(*args, **kwargs)
        self.calls.append(OpCall(key, name, measure))
        return out


def trace(run: Callable[..., Any], batch: tuple[torch.Tensor, ...]) -> Trace:
    """Run ``run(*batch)`` once and record its operators and module calls."""
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    handle = nn.modules.module.register_module_forward_pre_hook(count)
    recorder = _Recorder()
    try:
        with torch.inference_mode(), recorder:
            run(*batch)
    finally:
        handle.remove()
    return Trace(ops=recorder.calls, module_calls=counter[0])


def time_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, budget_s: float
) -> float:
    """Median milliseconds of one call, timed in blocks of back-to-back calls, each block in
    a quiet moment of the machine (:mod:`evaluators.latency.quiet`), alone on the machine
    (:func:`evaluators.latency.isolation.timing`)."""
    with timing(), torch.inference_mode():
        for _ in range(3):
            func(*args, **kwargs)
        start = time.perf_counter()
        func(*args, **kwargs)
        once = max(time.perf_counter() - start, 1e-7)
        per_block = max(1, min(200, int(2e-4 / once)))  # blocks of >= 0.2 ms
        blocks = max(7, min(51, int(budget_s / (once * per_block))))

        def block() -> None:
            for _ in range(per_block):
                func(*args, **kwargs)

        samples = gate().time_blocks(block, blocks)
    return statistics.median(samples) / per_block * 1e3


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def module_call_ms(budget_s: float = 0.2) -> float:
    """Cost of one ``nn.Module`` call with no work in it, measured on this machine."""
    depth = 32
    deep = nn.Sequential(*[_Identity() for _ in range(depth)])
    x = torch.zeros(1)
    return time_call(deep, (x,), {}, budget_s=budget_s) / (depth + 1)
