"""Latency prediction from a per-machine lookup table of measured operator latencies.

FLOPs say little about a small model's latency on a CPU; the operators it calls do. So a
prediction:

1. traces the candidate's forward pass as deployed (:func:`trace_deployed`): the torch
   operators it calls (:mod:`evaluators.latency.tracing`), or for ONNX Runtime the nodes of
   the optimized graph (:mod:`evaluators.latency.onnx_trace`);
2. looks each operator up in the machine's table (:mod:`evaluators.latency.table`),
   measuring (and storing) any it has not seen, each timed alone in quiet moments of the
   machine (:mod:`evaluators.latency.quiet`);
3. adds the per-module-call overhead, measured once with a stack of trivial modules;
4. corrects the sum with a linear calibration ``a * sum + g * operators + c``
   (:mod:`evaluators.latency.calibration`), fitted once per table on a fixed family of small
   synthetic models and on the task's teacher and students as built (never a candidate),
   timed for real (quietly) on this machine.

Weights do not enter the prediction: in eager PyTorch a quantized (dequantized) or sparse
weight costs the same as a float one, while a student or a structural change does change
the operators.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
from torch import nn

from evaluators._base import Candidate, Evaluator
from evaluators.latency.calibration import calibration_models, fit_calibration
from evaluators.latency.isolation import timing
from evaluators.latency.measurement import LatencySettings, deployed, example_batch, measure
from evaluators.latency.onnx_trace import trace_onnx
from evaluators.latency.table import Calibration, LatencyTable
from evaluators.latency.tracing import Trace, trace
from spaces.deploy import int8_layers
from spaces.task import Task


def trace_deployed(
    model: nn.Module, batch: tuple[torch.Tensor, ...], settings: LatencySettings
) -> Trace:
    """What ``model`` runs in ``settings.runtime``: torch operators for the torch runtimes, the
    optimized graph's nodes for ONNX Runtime (:mod:`evaluators.latency.onnx_trace`)."""
    if settings.runtime == "onnxruntime":
        return trace_onnx(model, batch, settings.threads)
    return trace(deployed(copy.deepcopy(model), settings), batch)


def architecture_key(model: nn.Module) -> str:
    """Models with the same modules, shapes and int8 layers share one prediction."""
    parts = [repr(model)]
    parts += [f"{k}{list(v.shape)}" for k, v in model.state_dict().items()]
    parts += [f"int8:{name}" for name in int8_layers(model)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def calibrate(
    table: LatencyTable, anchors: list[tuple[nn.Module, tuple[torch.Tensor, ...]]]
) -> Calibration:
    """``(a, g, c)`` of ``table``, fitted once on :func:`calibration_models` and ``anchors``.

    ``anchors`` are models of the task at hand (its teacher and students as built, never a
    candidate), weighted :attr:`LatencyPredictor.ANCHOR_WEIGHT` times a synthetic model in
    the fit: the synthetic family fixes the scale, the anchors the task's own shape of
    overhead. The fit is stored in the table per set of anchor architectures.
    """
    settings = table.settings
    name = ""
    if anchors:
        keys = "|".join(architecture_key(m) for m, _ in anchors)
        name = hashlib.sha256(keys.encode()).hexdigest()[:12]

    def fit() -> Calibration:
        synthetic = [(m, (x,)) for m, x in calibration_models(settings.batch_size)]
        models = synthetic + anchors
        weights = [1.0] * len(synthetic) + [LatencyPredictor.ANCHOR_WEIGHT] * len(anchors)
        traces = [trace_deployed(model, x, settings) for model, x in models]
        timed: list[list[float]] = [[] for _ in models]
        with timing():  # one exclusive hold for every round (evaluators.latency.isolation)
            for _ in range(table.ROUNDS):  # round-robin, as for ops; the fastest round is kept
                for i, (model, x) in enumerate(models):
                    timed[i].append(measure(model, x, settings, quiet=True)["latency_ms"])
        rows = []
        for t, values in zip(traces, timed, strict=True):
            total = sum(table.lookup_all(t.ops)) + t.module_calls * table.module_call()
            rows.append((total, len(t.ops), min(values)))
        return fit_calibration(rows, weights)

    return table.calibration(name, fit)


class LatencyPredictor:
    """Predicts a model's forward latency (ms) at the study's runtime, threads and batch."""

    #: Weight of a task's own model against one synthetic model in the calibration fit.
    ANCHOR_WEIGHT = 4.0

    def __init__(self, task: Task, settings: LatencySettings, root: Path | None = None) -> None:
        self.settings = settings
        self.batch = example_batch(task, settings.batch_size)
        self.table = LatencyTable(settings, root)
        # the task's teacher and students as built (float, uncompressed) anchor the calibration
        self.anchors = [(task.model, self.batch)] + [
            (build().eval(), self.batch) for build in task.students.values()
        ]

    def breakdown(self, model: nn.Module) -> dict[str, float]:
        """Milliseconds by operator name (summed over calls and calibrated), module calls and
        the calibration's per-operator and fixed terms; the values add up to the prediction.
        """
        torch.set_num_threads(self.settings.threads)
        a, g, c = calibrate(self.table, self.anchors)
        t = trace_deployed(model, self.batch, self.settings)
        parts: dict[str, float] = {}
        for op, ms in zip(t.ops, self.table.lookup_all(t.ops), strict=True):
            parts[op.name] = parts.get(op.name, 0.0) + a * ms
        if t.module_calls:
            parts["module calls"] = a * t.module_calls * self.table.module_call()
        parts["per-operator overhead"] = g * len(t.ops)
        parts["fixed overhead"] = c
        if self.table.measured:
            self.table.save()
            self.table.measured = 0
        return parts

    def predict(self, model: nn.Module) -> float:
        """Predicted median latency of one forward pass, in milliseconds."""
        return float(sum(self.breakdown(model).values()))


class PredictedLatencyEvaluator(Evaluator):
    """``latency_ms`` (and ``latency_predicted_ms``) from the lookup table, without timing.

    The prediction depends only on the architecture, so it is computed once per student.
    """

    def __init__(self, task: Task, settings: LatencySettings, root: Path | None = None) -> None:
        self.predictor = LatencyPredictor(task, settings, root)
        self._cache: dict[str, float] = {}

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        key = architecture_key(candidate.model)
        if key not in self._cache:
            self._cache[key] = self.predictor.predict(candidate.model)
        value = self._cache[key]
        return {"latency_ms": value, "latency_predicted_ms": value}
