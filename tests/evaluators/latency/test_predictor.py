"""The latency lookup table: built once per machine/runtime/threads/batch, then reused."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluators import LatencySettings, Task
from evaluators.latency import (
    LatencyPredictor,
    LatencyTable,
    PredictedLatencyEvaluator,
    architecture_key,
    example_batch,
    gate,
    int8_layer,
    measure,
    trace,
    trace_deployed,
)
from spaces.layers import compressible_layers


@dataclass
class _Candidate:
    model: nn.Module
    artifact: bytes = b""


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 64, 10),
    ).eval()


def test_onnxruntime_trace_holds_the_optimized_graph_nodes() -> None:
    settings = LatencySettings(runtime="onnxruntime", repeats=30)
    x = (torch.randn(16, 1, 8, 8),)
    model = _cnn()
    float_ops = [op.name for op in trace_deployed(model, x, settings).ops]
    # ONNX Runtime fuses Conv + Relu and Gemm: the table holds what actually runs
    assert "Relu" not in float_ops and "Conv" in float_ops
    int8_layer(model[2])
    ops = trace_deployed(model, x, settings).ops
    names = [op.name for op in ops]
    assert "QLinearConv" in names  # Q/DQ around the 8-bit layer fused into an integer kernel
    conv = next(op for op in ops if op.name == "QLinearConv")
    assert "uint8" in conv.key  # it takes 8-bit activations
    assert "C[16, 8, 3, 3]int8" in conv.key  # weights are constants of the one-node model
    assert all(op.measure(0.01) > 0 for op in ops)  # each node runs alone


def test_architecture_key_sees_int8_layers_not_weight_values() -> None:
    a, b = _cnn(), _cnn()
    with torch.no_grad():
        b[0].weight.mul_(2)  # type: ignore[operator]
    assert architecture_key(a) == architecture_key(b)
    int8_layer(b[2])
    assert architecture_key(a) != architecture_key(b)


def test_trace_records_each_operator_with_its_shapes() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    t = trace(model, (torch.zeros(5, 4),))
    names = [op.key.split("(")[0] for op in t.ops]
    assert names == ["torch._C._nn.linear", "torch.nn.functional.relu", "torch._C._nn.linear"]
    assert "T[5, 4]float32" in t.ops[0].key and "T[8, 4]float32" in t.ops[0].key
    assert t.module_calls == 4  # the Sequential and its three children


@pytest.mark.slow
def test_table_is_cached_on_disk_and_keyed_by_threads_and_batch(
    digits_task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # caching is what is tested here, not accuracy: one quick timing per entry
    monkeypatch.setattr(LatencyTable, "ROUNDS", 1)
    monkeypatch.setattr(LatencyTable, "OP_BUDGET_S", 0.01)
    settings = LatencySettings(batch_size=16, repeats=30, warmup=2)
    first = LatencyPredictor(digits_task, settings, root=tmp_path)
    value = first.predict(digits_task.model)
    assert value > 0 and first.table.path.exists()
    again = LatencyPredictor(digits_task, settings, root=tmp_path)
    assert again.predict(digits_task.model) == pytest.approx(value)
    assert again.table.measured == 0  # nothing measured twice
    other = LatencyTable(LatencySettings(batch_size=32, repeats=30), root=tmp_path)
    assert other.path != first.table.path and not other.entries
    ort = LatencyTable(LatencySettings(batch_size=16, repeats=30, runtime="onnxruntime"), tmp_path)
    assert ort.path not in (first.table.path, other.path)


@pytest.mark.slow
@pytest.mark.timing
def test_prediction_on_onnxruntime_comes_from_the_table_and_sees_int8(
    digits_task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LatencyTable, "ROUNDS", 1)  # CI time (it runs alone); BENCHMARKS.md: 3
    monkeypatch.setattr(gate(), "max_wait_s", 10.0)  # alone on the machine: wait as users do
    # the study's settings and the session's shared table folder: the predicted-latency study
    # test reuses this table and its calibration
    settings = LatencySettings(batch_size=64, repeats=30, runtime="onnxruntime")
    evaluator = PredictedLatencyEvaluator(digits_task, settings)
    batch = example_batch(digits_task, 64)
    int8_teacher = copy.deepcopy(digits_task.model)
    for layer in compressible_layers(int8_teacher).values():
        int8_layer(layer)
    half = digits_task.students["w0.5"]().eval()
    int8_layer(compressible_layers(half)["conv2"])
    models = {"teacher": digits_task.model, "teacher int8": int8_teacher, "w0.5 conv2 int8": half}
    # How close the prediction is to a measurement is a figure of the benchmark (`python -m
    # search.bench predictor`: 95% of 40 digits-cnn candidates within +-10% on onnxruntime),
    # not of a test: one timing here lands in the machine's 1.3-2x slower states (errors of
    # -0.48 to +0.32 were seen). Here: the prediction is the table's, repeatable, per model.
    predicted = {n: evaluator.evaluate(_Candidate(m))["latency_ms"] for n, m in models.items()}
    again = {n: evaluator.evaluate(_Candidate(m))["latency_ms"] for n, m in models.items()}
    assert predicted == again  # from the stored table: nothing is timed again
    assert all(0 < ms < float("inf") for ms in predicted.values())
    assert len(set(predicted.values())) == 3  # int8 layers and a narrower student differ
    assert measure(models["teacher"], batch, settings)["latency_ms"] > 0  # same runtime runs
