"""Latency: measured in the form that would ship, timed alone on the machine, or predicted.

One job per module, imports pointing one way (top to bottom):

- :mod:`~evaluators.latency.machine`: this machine's identity and the cache folder;
- :mod:`~evaluators.latency.runtimes`: where a candidate runs (``torch``, ``torch-int8``,
  ``onnxruntime``), its deployable builds, timing a run;
- :mod:`~evaluators.latency.quiet`: when the machine is quiet (:class:`QuietGate`);
- :mod:`~evaluators.latency.isolation`: timing alone on the machine, a machine-wide
  readers-writer lock between frontier processes (:class:`MachineLock`);
- :mod:`~evaluators.latency.measurement`: :class:`LatencySettings`, :func:`measure`,
  :class:`LatencyEvaluator`;
- :mod:`~evaluators.latency.interleaved`: :func:`time_interleaved`, several candidates timed
  side by side in round-robin rounds (the final figures of a study);
- :mod:`~evaluators.latency.tracing`: the operators a torch forward pass calls, timing one
  alone; :mod:`~evaluators.latency.onnx_trace`: the same for ONNX Runtime's optimized graph;
- :mod:`~evaluators.latency.table`: the per-machine lookup table on disk;
- :mod:`~evaluators.latency.calibration`: the calibration's model family and fit;
- :mod:`~evaluators.latency.predictor`: :class:`PredictedLatencyEvaluator`.

The modules ``measurement`` and ``tracing`` are not called ``measure`` and ``trace``: those
are the names of functions exported here, and a submodule of the same name would shadow them
(or be shadowed) as an attribute of this package.
"""

from __future__ import annotations

from evaluators.latency.calibration import calibration_models, fit_calibration, int8_layer
from evaluators.latency.interleaved import ROUNDS, InterleavedLatency, time_interleaved
from evaluators.latency.isolation import (
    MachineLock,
    computes,
    computing,
    machine_lock,
    timing,
)
from evaluators.latency.machine import cache_root, cpu_model, machine_id
from evaluators.latency.measurement import (
    LATENCY_MODES,
    LatencyEvaluator,
    LatencySettings,
    deployed,
    example_batch,
    measure,
)
from evaluators.latency.onnx_trace import optimized_graph, time_session, trace_onnx
from evaluators.latency.predictor import (
    LatencyPredictor,
    PredictedLatencyEvaluator,
    architecture_key,
    calibrate,
    trace_deployed,
)
from evaluators.latency.quiet import QuietGate, gate, probe_us
from evaluators.latency.runtimes import (
    RUNTIMES,
    Runtime,
    get_runtime,
    rebuilt,
    runner,
    summarize,
    time_model,
    time_run,
    timing_device,
)
from evaluators.latency.table import TABLE_VERSION, LatencyTable
from evaluators.latency.tracing import OpCall, Trace, module_call_ms, time_call, trace

__all__ = [
    "LATENCY_MODES",
    "ROUNDS",
    "RUNTIMES",
    "TABLE_VERSION",
    "InterleavedLatency",
    "LatencyEvaluator",
    "LatencyPredictor",
    "LatencySettings",
    "LatencyTable",
    "MachineLock",
    "OpCall",
    "PredictedLatencyEvaluator",
    "QuietGate",
    "Runtime",
    "Trace",
    "architecture_key",
    "cache_root",
    "calibrate",
    "calibration_models",
    "computes",
    "computing",
    "cpu_model",
    "deployed",
    "example_batch",
    "fit_calibration",
    "gate",
    "get_runtime",
    "int8_layer",
    "machine_id",
    "machine_lock",
    "measure",
    "module_call_ms",
    "optimized_graph",
    "probe_us",
    "rebuilt",
    "runner",
    "summarize",
    "time_call",
    "time_interleaved",
    "time_model",
    "time_run",
    "time_session",
    "timing",
    "timing_device",
    "trace",
    "trace_deployed",
    "trace_onnx",
]
