"""ONNX Runtime's own quantizations as baselines (search/bench/ort_baselines.py, ort_compare.py),
on the digits-cnn teacher of the test session."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from evaluators import Task
from evaluators.accuracy import AccuracyEvaluator
from evaluators.latency import LatencySettings, example_batch
from search.bench import ort_baselines as ob
from search.bench.ort_compare import (
    Point,
    dominance_line,
    dominators,
    plot_points,
    time_side_by_side,
)
from spaces.training import predict

LATENCY = LatencySettings(batch_size=16, threads=1, warmup=1, repeats=30, runtime="onnxruntime")
#: A fraction of the grid, to keep the test short; every option is exercised by one variant
QUICK = ob.OrtSettings(calibration_rows=40, methods=("minmax", "entropy"), reduce_range=(False,))


@pytest.fixture(scope="module")
def spied(digits_task: Task) -> tuple[ob.OrtBaselines, list[Any], list[np.ndarray]]:
    """The baselines of digits-cnn, with every split a calibration reader was given and every
    batch it handed to ONNX Runtime."""
    splits: list[Any] = []
    batches: list[np.ndarray] = []
    init, get_next = ob.TrainReader.__init__, ob.TrainReader.get_next

    def spy_init(self: ob.TrainReader, train: Any, *args: Any) -> None:
        splits.append(train)
        init(self, train, *args)

    def spy_next(self: ob.TrainReader) -> dict[str, np.ndarray] | None:
        feed = get_next(self)
        if feed is not None:
            batches.append(next(iter(feed.values())))
        return feed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ob.TrainReader, "__init__", spy_init)
        mp.setattr(ob.TrainReader, "get_next", spy_next)
        result = ob.ort_baselines(digits_task, LATENCY, QUICK)
    return result, splits, batches


def _ops(data: bytes) -> set[str]:
    return {node.op_type for node in onnx.load_from_string(data).graph.node}


def test_both_baselines_build_run_and_keep_the_teachers_accuracy(
    digits_task: Task, spied: tuple[ob.OrtBaselines, list[Any], list[np.ndarray]]
) -> None:
    result = spied[0]
    teacher = AccuracyEvaluator(digits_task, split="val").score(
        predict(digits_task.model, digits_task.val)
    )["accuracy"]
    # the float export computes the teacher's numbers
    assert result.float_onnx.val["accuracy"] == pytest.approx(teacher, abs=1e-6)
    assert result.float_onnx.size_bytes > 0
    for b in result.quantized:
        assert abs(b.val["accuracy"] - teacher) <= 0.03, b.name
        assert b.size_bytes < 0.5 * result.float_onnx.size_bytes, b.name
        t = b.test
        assert t["test_accuracy_low"] <= t["test_accuracy"] <= t["test_accuracy_high"]
        # the chosen variant is the best on validation among those tried
        assert b.val["accuracy"] == max(v.val["accuracy"] for v in b.tried)
        assert b.data in {v.data for v in b.tried}
    assert len(result.dynamic.tried) == len(QUICK.reduce_range)
    grid = len(QUICK.ops) * len(QUICK.activations) * len(QUICK.methods) * len(QUICK.reduce_range)
    assert len(result.static.tried) + len(result.static_failed) == grid
    assert _ops(result.dynamic.data) & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(result.static.data)
    assert "QuantizeLinear" not in _ops(result.float_onnx.data)


def test_calibration_reads_the_first_train_rows_only(
    digits_task: Task, spied: tuple[ob.OrtBaselines, list[Any], list[np.ndarray]]
) -> None:
    result, splits, batches = spied
    assert splits and all(s is digits_task.train for s in splits)
    # whole batches of the latency batch size: 40 rows asked, 2 x 16 given
    assert result.calibration_rows == 32
    first = digits_task.train.inputs[0][:32].numpy()
    per_variant = 2
    assert not result.static_failed  # every variant calibrates on digits-cnn
    assert len(batches) == per_variant * len(result.static.tried)
    for i, batch in enumerate(batches):
        k = i % per_variant
        assert len(batch) == LATENCY.batch_size
        np.testing.assert_array_equal(batch, first[k * LATENCY.batch_size :][: len(batch)])
    # no validation or test row was ever fed to a calibration
    val = digits_task.val.inputs[0].numpy().reshape(len(digits_task.val), -1)
    fed = np.concatenate(batches).reshape(-1, val.shape[1])
    held_out = {r.tobytes() for r in val} | {
        r.tobytes() for r in digits_task.test.inputs[0].numpy().reshape(len(digits_task.test), -1)
    }
    train = {r.tobytes() for r in first.reshape(len(first), -1)}
    assert all(r.tobytes() in train for r in fed)
    assert not any(r.tobytes() in held_out - train for r in fed)


def test_time_side_by_side_times_models_and_onnx_files(
    digits_task: Task, spied: tuple[ob.OrtBaselines, list[Any], list[np.ndarray]]
) -> None:
    result = spied[0]
    entries = {"teacher": digits_task.model, "static": result.static.data}
    timed = time_side_by_side(
        entries, example_batch(digits_task, LATENCY.batch_size), LATENCY, rounds=2, quiet=False
    )
    assert set(timed) == set(entries)
    for t in timed.values():
        assert len(t.rounds_ms) == 2 and math.isfinite(t.latency_ms) and t.latency_ms > 0
    with pytest.raises(ValueError, match="'rounds'"):
        time_side_by_side(entries, (torch.zeros(1),), LATENCY, rounds=0)


def test_dominance_on_hand_made_points() -> None:
    front = [
        Point("a", 0.99, 1000, 5.0),
        Point("b", 0.97, 300, 2.0),
    ]
    worse = Point("ort", 0.98, 1200, 6.0)
    assert [p.name for p in dominators(worse, front)] == ["a"]
    assert "**dominated** by a" in dominance_line(worse, front)
    # smaller than every front point: not dominated, whatever its accuracy
    small = Point("ort", 0.90, 200, 9.0)
    assert dominators(small, front) == []
    assert "**not dominated**" in dominance_line(small, front)
    # faster than every front point at a size between them: not dominated either
    assert dominators(Point("ort", 0.98, 500, 1.0), front) == []
    # an equal point does not dominate; equal on two figures and better on one does
    assert dominators(Point("x", 0.99, 1000, 5.0), front) == []
    assert [p.name for p in dominators(Point("x", 0.99, 1000, 5.5), front)] == ["a"]
    # more accurate than the whole front: not dominated
    assert dominators(Point("x", 0.995, 5000, 50.0), front) == []
    # faster than the front but larger and less accurate than "a": dominated on accuracy and
    # size only
    fast = Point("ort", 0.98, 1100, 1.0)
    assert dominators(fast, front) == []
    two = ("accuracy", "size_bytes")
    assert [p.name for p in dominators(fast, front, two)] == ["a"]
    assert "**dominated** on accuracy and size_bytes only by a" in dominance_line(
        fast, front, objectives=two
    )
    with pytest.raises(ValueError, match="'objectives'"):
        dominators(fast, front, ("bops",))


def test_plot_points_writes_a_png(tmp_path: Path) -> None:
    front = [Point("a", 0.99, 1000, 5.0), Point("b", 0.97, 300, 2.0)]
    for x in ("size_bytes", "latency_ms"):
        path = plot_points(front, [Point("ORT", 0.98, 500, 3.0)], tmp_path / f"{x}.png", x=x)
        assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="'x'"):
        plot_points(front, [], tmp_path / "bad.png", x="bops")


def test_weight_nodes_are_the_products_with_a_weight(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="linear"),
            helper.make_node("MatMul", ["h", "x"], ["a"], name="attention_product"),
            helper.make_node("Add", ["a", "w"], ["y"], name="add"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [w],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert ob._weight_nodes(path) == ["linear"]


def test_calibration_rows_are_whole_batches() -> None:
    assert ob.calibration_rows(64, 540, 8) == 64
    assert ob.calibration_rows(70, 540, 8) == 64
    assert ob.calibration_rows(64, 30, 8) == 24  # a small train split
    assert ob.calibration_rows(5, 540, 8) == 5  # less than one batch: one smaller batch
    assert ob.calibration_rows(64, 6, 8) == 6


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"calibration_rows": 0}, "calibration_rows"),
        ({"methods": ("kl",)}, "methods"),
        ({"activations": ()}, "activations"),
        ({"ops": ("all",)}, "ops"),
        ({"reduce_range": (1,)}, "reduce_range"),
    ],
)
def test_settings_name_the_bad_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        ob.OrtSettings(**kwargs)
