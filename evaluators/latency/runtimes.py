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

**On a CUDA device** (the study's ``device``, passed as ``device=``), a runtime that has a CUDA
form runs there: ``"torch"`` on a copy of the model moved to the GPU (each pass copies its
inputs from the host, and waits for the GPU with ``torch.cuda.synchronize``: the clock stops
when the outputs are ready), ``"onnxruntime"`` with its CUDA execution provider (inputs from
and outputs to the host, as ONNX Runtime's ``run`` does), or on its CPU provider, with one
logged note, when the installed ONNX Runtime has none. ``"torch-int8"`` (x86 int8 kernels)
has no CUDA form and runs on the CPU.

:func:`runner` gives a model's deployable form as a callable taking the input tensors;
:func:`time_model` times it. Both work for whole candidates and for single layers (a latency
lookup table).
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces import deploy

log = logging.getLogger("frontier")

Run = Callable[..., Any]
#: ``prepare(model, threads, example_input) -> run``: build the deployable form once; ``run``
#: takes the model's input tensors (any batch size) and returns its outputs.
Prepare = Callable[[nn.Module, int, tuple[torch.Tensor, ...] | None], Run]
#: ``prepare(model, threads, example_input, device)``: the same, running on a CUDA ``device``
#: (the model given stays where it is).
CudaPrepare = Callable[[nn.Module, int, tuple[torch.Tensor, ...] | None, torch.device], Run]


@dataclass(frozen=True)
class Runtime:
    """A named way to run a model: ``prepare`` builds it once, the callable it returns runs it.

    ``cuda`` builds its CUDA form, for a study whose device is a GPU; ``None`` when the
    runtime runs on the CPU only.
    """

    name: str
    description: str
    prepare: Prepare
    cuda: CudaPrepare | None = None


def _torch(model: nn.Module, threads: int, example_input: object = None) -> Run:
    torch.set_num_threads(threads)
    model = model.eval()

    def run(*inputs: torch.Tensor) -> Any:
        with torch.inference_mode():
            return model(*inputs)

    return run


def _torch_cuda(model: nn.Module, threads: int, example_input: object, device: torch.device) -> Run:
    torch.set_num_threads(threads)  # the host side (input copies, kernel launches)
    on_gpu = copy.deepcopy(model).to(device).eval()  # the candidate itself stays on the CPU

    def run(*inputs: torch.Tensor) -> Any:
        with torch.inference_mode():
            out = on_gpu(*(t.to(device) for t in inputs))
        torch.cuda.synchronize(device)  # kernels run asynchronously: wait for the outputs
        return out

    return run


def _torch_int8(model: nn.Module, threads: int, example_input: object = None) -> Run:
    return _torch(deploy.to_torch_int8(model), threads)


class _OnnxRun:
    """A model in ONNX Runtime: exported once (batch dimension dynamic), then one session.

    :meth:`rebuild` gives a new session of the same export: a measurement over several
    builds (:func:`evaluators.latency.measure`) pays for the export once.
    """

    def __init__(
        self,
        model: nn.Module,
        threads: int,
        data: bytes | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.model, self.threads, self.data, self.device = model, threads, data, device
        self.session: Any = None

    def build(self, inputs: tuple[torch.Tensor, ...]) -> None:
        import onnxruntime as ort  # optional and slow to import: only when it is used

        if self.data is None:
            self.data = deploy.to_onnx(self.model, inputs, int8=True, kernels_only=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = onnx_providers(ort.get_available_providers(), self.device)
        self.session = ort.InferenceSession(self.data, options, providers=providers)

    def rebuild(self, inputs: tuple[torch.Tensor, ...]) -> _OnnxRun:
        fresh = _OnnxRun(self.model, self.threads, self.data, self.device)
        fresh.build(inputs)
        return fresh

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.session is None:
            self.build(inputs)
        names = [i.name for i in self.session.get_inputs()]
        return self.session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})


#: Whether :func:`onnx_providers` has said that ONNX Runtime has no CUDA provider here.
_NOTED_NO_CUDA_PROVIDER = [False]


def onnx_providers(available: list[str], device: torch.device | None) -> list[Any]:
    """ONNX Runtime's execution providers for ``device``: the CUDA provider on that GPU, then
    the CPU one (for the operators it lacks), or the CPU provider alone.

    A CUDA ``device`` without ``CUDAExecutionProvider`` in ``available`` (``onnxruntime``
    rather than ``onnxruntime-gpu`` installed) falls back to the CPU, with one logged note.
    """
    if device is None or device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        if not _NOTED_NO_CUDA_PROVIDER[0]:
            _NOTED_NO_CUDA_PROVIDER[0] = True
            log.warning(
                "latency: the device is %s but ONNX Runtime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); timing on its CPU provider",
                device,
            )
        return ["CPUExecutionProvider"]
    index = device.index if device.index is not None else torch.cuda.current_device()
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _onnxruntime(
    model: nn.Module,
    threads: int,
    example_input: tuple[torch.Tensor, ...] | None = None,
    device: torch.device | None = None,
) -> Run:
    run = _OnnxRun(model, threads, device=device)
    if example_input is not None:
        run.build(tuple(example_input))
    return run


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("torch", "eager PyTorch, float32 kernels", _torch, _torch_cuda),
        Runtime("torch-int8", "eager PyTorch, int8 kernels for 8-bit layers", _torch_int8),
        Runtime(
            "onnxruntime",
            "ONNX Runtime (CPU, or CUDA on a GPU device), int8 QDQ for 8-bit layers",
            _onnxruntime,
            _onnxruntime,
        ),
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
    device: torch.device | None = None,
) -> Run:
    """``model`` in ``runtime``'s deployable form: a callable taking the input tensors.

    ``example_input`` lets a runtime that compiles the model (ONNX Runtime) do so now rather
    than on the first call. ``device``: a CUDA device runs the runtime's CUDA form where it has
    one (see the module docstring); anything else, or ``None``, the CPU form.
    """
    rt = get_runtime(runtime)
    if rt.cuda is not None and device is not None and device.type == "cuda":
        return rt.cuda(model, threads, example_input, device)
    return rt.prepare(model, threads, example_input)


def timing_device(runtime: str, device: torch.device | None) -> torch.device:
    """Where ``runtime`` times a candidate for a study on ``device``: the GPU when the
    runtime has a CUDA form and ``device`` is one, else the CPU."""
    if device is not None and device.type == "cuda" and get_runtime(runtime).cuda is not None:
        return device
    return torch.device("cpu")


def rebuilt(
    run: Run,
    runtime: str,
    model: nn.Module,
    threads: int,
    inputs: tuple[torch.Tensor, ...],
    device: torch.device | None = None,
) -> Run:
    """Another build of ``run``'s deployable form (sharing an ONNX export where there is one)."""
    rebuild = getattr(run, "rebuild", None)
    if rebuild is not None:
        return rebuild(tuple(inputs))
    return runner(runtime, model, threads=threads, example_input=tuple(inputs), device=device)


def time_model(
    runtime: str,
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    *,
    threads: int,
    warmup: int = 10,
    repeats: int = 50,
    device: torch.device | None = None,
) -> list[float]:
    """Wall times (milliseconds, sorted) of ``repeats`` forward passes after ``warmup``.

    Works for a whole model or a single layer (an ``nn.Linear`` / ``nn.Conv2d``, optionally
    given 8-bit activations with :func:`spaces.activations.attach` and integer weights with
    :func:`spaces.quantization.mark_quantized`), so a per-layer lookup table times layers
    exactly as candidates are timed. The deployable form is built before the clock starts.
    ``device``: as for :func:`runner`.
    """
    inputs = tuple(inputs)
    run = runner(runtime, model, threads=threads, example_input=inputs, device=device)
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
