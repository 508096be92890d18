"""Runtimes: where a candidate runs when its latency is measured.

Each runtime turns a compressed torch model into the form that would ship and returns a
zero-argument callable running one forward pass on a fixed batch:

- ``"torch"``: eager PyTorch, float32. Layers with 8-bit activations run their float
  simulation (quantize / de-quantize around a float kernel), so only weight-only studies
  should measure here.
- ``"torch-int8"``: eager PyTorch with every layer that has integer weights and 8-bit
  activations on torch's int8 kernels (x86 / fbgemm: ``quint8`` activations, ``qint8``
  weights); float layers stay float.
- ``"onnxruntime"``: the model exported to ONNX (:func:`spaces.deploy.to_onnx`), layers with
  integer weights and 8-bit activations in QDQ form (ONNX Runtime's CPU provider fuses them
  into QLinearConv / QGemm integer kernels), every other layer with float weights.

The registry is the one entry point for timing anything (whole candidates here, single layers
for a latency lookup table): :func:`time_forward`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Forward = Callable[[], Any]
#: ``prepare(model, inputs, threads) -> forward``: build the deployable form once.
Prepare = Callable[[nn.Module, tuple[torch.Tensor, ...], int], Forward]


@dataclass(frozen=True)
class Runtime:
    """A named way to run a model: ``prepare`` builds it once, the callable it returns runs it."""

    name: str
    description: str
    prepare: Prepare


def _torch(model: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int) -> Forward:
    torch.set_num_threads(threads)
    model = model.eval()

    def forward() -> Any:
        with torch.inference_mode():
            return model(*inputs)

    return forward


def _torch_int8(model: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int) -> Forward:
    from spaces.deploy import to_torch_int8

    return _torch(to_torch_int8(model), inputs, threads)


def _onnxruntime(model: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int) -> Forward:
    import onnxruntime as ort

    from spaces.deploy import to_onnx

    data = to_onnx(model, inputs, int8=True, kernels_only=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}

    def forward() -> Any:
        return session.run(None, feed)

    return forward


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("torch", "eager PyTorch, float32 kernels", _torch),
        Runtime("torch-int8", "eager PyTorch, int8 kernels for 8-bit layers", _torch_int8),
        Runtime("onnxruntime", "ONNX Runtime CPU, int8 QDQ for 8-bit layers", _onnxruntime),
    )
}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; a ValueError lists the choices."""
    if name not in RUNTIMES:
        raise ValueError(
            f"'latency.runtime' must be one of {sorted(RUNTIMES)}. Got {name!r} instead."
        )
    return RUNTIMES[name]


def prepare(
    runtime: str, model: nn.Module, inputs: tuple[torch.Tensor, ...], *, threads: int
) -> Forward:
    """Build ``model``'s deployable form for ``runtime``; the result runs one forward pass."""
    return get_runtime(runtime).prepare(model, tuple(inputs), threads)


def time_forward(
    runtime: str,
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    *,
    threads: int,
    warmup: int = 10,
    repeats: int = 50,
) -> list[float]:
    """Wall times (milliseconds, sorted) of ``repeats`` forward passes after ``warmup``.

    Works for a whole model or a single layer (an ``nn.Linear`` / ``nn.Conv2d``, optionally
    given 8-bit activations with :func:`spaces.activations.attach` and integer weights with
    :func:`spaces.quantization.mark_quantized`), so a per-layer lookup table times layers
    exactly as candidates are timed.
    """
    forward = prepare(runtime, model, inputs, threads=threads)
    times: list[float] = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        forward()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times


def summarize(times: list[float]) -> dict[str, float]:
    """``latency_ms`` (median), ``latency_p90_ms`` and ``latency_cv`` of sorted times."""
    mean = statistics.fmean(times)
    return {
        "latency_ms": statistics.median(times),
        "latency_p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "latency_cv": statistics.pstdev(times) / mean if mean > 0 else 0.0,
    }
