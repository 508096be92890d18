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
  into QLinearConv / QGemm integer kernels), layers with dynamic activations
  (``act_mode = "dynamic"``) as ``DynamicQuantizeLinear`` + ``MatMulInteger`` (fused into
  ``DynamicQuantizeMatMul``), every other layer with float weights. ``"torch-int8"`` keeps
  dynamic layers in their float simulation (see :mod:`spaces.deploy`).

:func:`runner` gives a model's deployable form as a callable taking the input tensors;
:func:`time_model` times it. Both work for whole candidates and for single layers (a latency
lookup table).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces import deploy

Run = Callable[..., Any]
#: ``prepare(model, threads, example_input) -> run``: build the deployable form once; ``run``
#: takes the model's input tensors (any batch size) and returns its outputs.
Prepare = Callable[[nn.Module, int, tuple[torch.Tensor, ...] | None], Run]


@dataclass(frozen=True)
class Runtime:
    """A named way to run a model: ``prepare`` builds it once, the callable it returns runs it."""

    name: str
    description: str
    prepare: Prepare


def _torch(model: nn.Module, threads: int, example_input: object = None) -> Run:
    torch.set_num_threads(threads)
    model = model.eval()

    def run(*inputs: torch.Tensor) -> Any:
        with torch.inference_mode():
            return model(*inputs)

    return run


def _torch_int8(model: nn.Module, threads: int, example_input: object = None) -> Run:
    return _torch(deploy.to_torch_int8(model), threads)


class _OnnxRun:
    """A model in ONNX Runtime: exported once (batch dimension dynamic), then one session.

    :meth:`rebuild` gives a new session of the same export: a measurement over several
    builds (:func:`evaluators.latency.measure`) pays for the export once.
    """

    def __init__(self, model: nn.Module, threads: int, data: bytes | None = None) -> None:
        self.model, self.threads, self.data = model, threads, data
        self.session: Any = None

    def build(self, inputs: tuple[torch.Tensor, ...]) -> None:
        import onnxruntime as ort  # optional and slow to import: only when it is used

        if self.data is None:
            self.data = deploy.to_onnx(self.model, inputs, int8=True, kernels_only=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])

    def rebuild(self, inputs: tuple[torch.Tensor, ...]) -> _OnnxRun:
        fresh = _OnnxRun(self.model, self.threads, self.data)
        fresh.build(inputs)
        return fresh

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.session is None:
            self.build(inputs)
        names = [i.name for i in self.session.get_inputs()]
        return self.session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})


def _onnxruntime(
    model: nn.Module, threads: int, example_input: tuple[torch.Tensor, ...] | None = None
) -> Run:
    run = _OnnxRun(model, threads)
    if example_input is not None:
        run.build(tuple(example_input))
    return run


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


def runner(
    runtime: str,
    model: nn.Module,
    *,
    threads: int,
    example_input: tuple[torch.Tensor, ...] | None = None,
) -> Run:
    """``model`` in ``runtime``'s deployable form: a callable taking the input tensors.

    ``example_input`` lets a runtime that compiles the model (ONNX Runtime) do so now rather
    than on the first call.
    """
    return get_runtime(runtime).prepare(model, threads, example_input)


def rebuilt(
    run: Run, runtime: str, model: nn.Module, threads: int, inputs: tuple[torch.Tensor, ...]
) -> Run:
    """Another build of ``run``'s deployable form (sharing an ONNX export where there is one)."""
    rebuild = getattr(run, "rebuild", None)
    if rebuild is not None:
        return rebuild(tuple(inputs))
    return runner(runtime, model, threads=threads, example_input=tuple(inputs))


def time_model(
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
    exactly as candidates are timed. The deployable form is built before the clock starts.
    """
    inputs = tuple(inputs)
    run = runner(runtime, model, threads=threads, example_input=inputs)
    return time_run(run, inputs, warmup=warmup, repeats=repeats)


def time_run(
    run: Callable[..., Any], inputs: tuple[torch.Tensor, ...], *, warmup: int, repeats: int
) -> list[float]:
    """Wall times (milliseconds, sorted) of ``repeats`` calls of ``run`` after ``warmup``."""
    times: list[float] = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        run(*inputs)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times


def summarize(times: list[float]) -> dict[str, float]:
    """``latency_ms`` (median), ``latency_p90_ms`` and ``latency_cv`` of the times."""
    times = sorted(times)
    mean = statistics.fmean(times)
    return {
        "latency_ms": statistics.median(times),
        "latency_p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "latency_cv": statistics.pstdev(times) / mean if mean > 0 else 0.0,
    }
