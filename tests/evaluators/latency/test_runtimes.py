from __future__ import annotations

import pytest
import torch
from torch import nn

import spaces.deploy
from evaluators import LatencyEvaluator, LatencySettings, Task
from evaluators.latency import RUNTIMES, example_batch, gate, measure, runner, time_model
from spaces import CompressionConfig, FinetuneSettings, StudentPool, activations, compress
from spaces.quantization import mark_quantized, quantize_weight


def _int8_linear() -> nn.Linear:
    """One linear layer in the form a compressed candidate's integer layers take."""
    torch.manual_seed(0)
    layer = nn.Linear(32, 16)
    code = quantize_weight(layer.weight, 8)
    with torch.no_grad():
        layer.weight.copy_(code.dequantize())
    mark_quantized(layer, code)
    mid = float((activations.QMAX + 1) // 2)  # ranges [-2, 2] in, [-4, 4] out
    activations.attach(
        layer, torch.tensor([4.0 / activations.QMAX, mid, 8.0 / activations.QMAX, mid])
    )
    return layer.eval()


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_runtime_computes_the_model(digits_task: Task, runtime: str) -> None:
    x = digits_task.val.inputs[0][:64]
    run = runner(runtime, digits_task.model, threads=1)  # compiled lazily, on the first call
    out = run(x)
    out = run(x[:5])  # any batch size
    out = torch.as_tensor(out[0] if isinstance(out, list) else out)
    with torch.no_grad():
        ref = digits_task.model(x[:5])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_single_int8_layer_can_be_timed_in_every_runtime(runtime: str) -> None:
    layer = _int8_linear()
    x = torch.rand(8, 32) * 4 - 2
    times = time_model(runtime, layer, (x,), threads=1, warmup=2, repeats=5)
    assert len(times) == 5 and times == sorted(times) and times[0] > 0
    out = runner(runtime, layer, threads=1, example_input=(x[:1],))(x)
    out = torch.as_tensor(out[0] if isinstance(out, list) else out)
    with torch.no_grad():
        ref = layer(x)
    assert float((out - ref).abs().max()) <= 2 * 8.0 / activations.QMAX + 1e-6


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_group_wise_candidate_can_be_timed_in_every_runtime(
    pool: StudentPool, runtime: str
) -> None:
    config = CompressionConfig(
        bits={"conv1": 4, "conv2": 4, "fc1": 3, "fc2": 8}, granularity="g32", act_bits=8
    )
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    x = pool.task.val.inputs[0][:16]
    times = time_model(runtime, cand.model, (x,), threads=1, warmup=1, repeats=3)
    assert len(times) == 3 and times[0] > 0
    out = runner(runtime, cand.model, threads=1, example_input=(x[:1],))(x)
    out = torch.as_tensor(out[0] if isinstance(out, list) else out)
    with torch.no_grad():
        ref = cand.model(x)
    # int8 kernels round an activation on a bucket edge the other way now and then
    assert float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())


def test_latency_evaluator_uses_the_study_runtime(digits_task: Task) -> None:
    class Cand:
        model = digits_task.model
        artifact = b""

    settings = LatencySettings(runtime="onnxruntime", repeats=30, warmup=2)
    figures = LatencyEvaluator(digits_task, settings).evaluate(Cand())
    assert set(figures) == {"latency_ms", "latency_p90_ms", "latency_cv"}
    assert 0 < figures["latency_ms"] <= figures["latency_p90_ms"]


def test_quiet_measurement_times_every_pass_through_the_gate(
    digits_task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_to_onnx = spaces.deploy.to_onnx

    def counting_to_onnx(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real_to_onnx(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(spaces.deploy, "to_onnx", counting_to_onnx)
    settings = LatencySettings(runtime="onnxruntime", repeats=30, warmup=1, builds=3, quiet=True)
    probe = gate()
    before = probe.quiet_runs + probe.loaded_runs
    figures = measure(digits_task.model, example_batch(digits_task, 8), settings)
    assert figures["latency_ms"] > 0
    assert probe.quiet_runs + probe.loaded_runs - before == 30  # 3 builds x 10 gated passes
    assert len(calls) == 1  # one ONNX export shared by the three builds


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'latency.runtime' must be one of \['onnxruntime'"):
        LatencySettings(runtime="tensorrt")
