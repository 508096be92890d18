"""Latency on the study's device: runtimes with a CUDA form run there, the others on the CPU.

Which form a runtime builds, and which ONNX Runtime providers it asks for, is checked on any
machine; the tests at the end time on a real GPU and are skipped where torch sees none.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

import evaluators.latency.runtimes as runtimes
from evaluators import Task
from evaluators.latency import LatencySettings, example_batch, measure, runner, timing_device
from evaluators.latency.runtimes import onnx_providers

CUDA = torch.cuda.is_available()
GPU = torch.device("cuda", 0)


def _recording_forms(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Replace runtime ``name``'s two forms with ones that record which was built."""
    built: list[str] = []
    rt = runtimes.RUNTIMES[name]

    def cpu(model: nn.Module, threads: int, example: Any) -> Any:
        built.append("cpu")
        return lambda *inputs: None

    def cuda(model: nn.Module, threads: int, example: Any, device: torch.device) -> Any:
        built.append(f"cuda {device}")
        return lambda *inputs: None

    form = cuda if rt.cuda is not None else None
    monkeypatch.setitem(runtimes.RUNTIMES, name, replace(rt, prepare=cpu, cuda=form))
    return built


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_runtimes_with_a_cuda_form_build_it_for_a_cuda_device(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    built = _recording_forms(monkeypatch, name)
    model = nn.Linear(2, 2)
    runner(name, model, threads=1)
    runner(name, model, threads=1, device=torch.device("cpu"))
    runner(name, model, threads=1, device=GPU)
    assert built == ["cpu", "cpu", "cuda cuda:0"]
    assert timing_device(name, GPU) == GPU
    assert timing_device(name, None) == torch.device("cpu")


def test_torch_int8_has_no_cuda_form_and_times_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _recording_forms(monkeypatch, "torch-int8")
    runner("torch-int8", nn.Linear(2, 2), threads=1, device=GPU)
    assert built == ["cpu"]
    assert timing_device("torch-int8", GPU) == torch.device("cpu")


def test_onnx_runtime_asks_for_its_cuda_provider_on_that_gpu() -> None:
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(both, None) == ["CPUExecutionProvider"]
    assert onnx_providers(both, torch.device("cpu")) == ["CPUExecutionProvider"]
    assert onnx_providers(both, torch.device("cuda", 1)) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]


def test_onnx_runtime_without_a_cuda_provider_falls_back_with_one_note(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtimes, "_NOTED_NO_CUDA_PROVIDER", [False])
    with caplog.at_level(logging.WARNING, logger="frontier"):
        for _ in range(3):
            assert onnx_providers(["CPUExecutionProvider"], GPU) == ["CPUExecutionProvider"]
    notes = [r.getMessage() for r in caplog.records if "CUDAExecutionProvider" in r.getMessage()]
    assert len(notes) == 1
    assert "install onnxruntime-gpu" in notes[0]


# --- a real GPU (skipped without one) ---------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_torch_on_cuda_times_a_copy_and_leaves_the_candidate_on_the_cpu(
    digits_task: Task,
) -> None:
    model = copy.deepcopy(digits_task.model)
    settings = LatencySettings(batch_size=64, warmup=2, repeats=30, builds=2)
    batch = example_batch(digits_task, settings.batch_size)
    run = runner("torch", model, threads=1, device=torch.device("cuda"))
    out = run(*batch)
    assert out.is_cuda
    assert torch.allclose(out.cpu(), model(*batch), rtol=1e-4, atol=1e-4)
    figures = measure(model, batch, settings, device=torch.device("cuda"))
    assert figures["latency_ms"] > 0
    assert not any(p.is_cuda for p in model.parameters())


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_onnx_runtime_on_cuda_computes_the_model(digits_task: Task) -> None:
    ort = pytest.importorskip("onnxruntime")
    batch = example_batch(digits_task, 16)
    run = runner("onnxruntime", digits_task.model, threads=1, example_input=batch, device=GPU)
    (logits,) = run(*batch)
    expected = digits_task.model(*batch).detach().numpy()
    assert abs(logits - expected).max() < 1e-3
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert run.session.get_providers()[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
