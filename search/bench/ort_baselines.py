"""ONNX Runtime's own quantization of a study's teacher: the baselines a user would try instead.

A user who wants a smaller or faster model without frontier exports the float model to ONNX
and runs ``onnxruntime.quantization``. :func:`ort_baselines` does that to a task's teacher and
scores the results like candidates:

- the float ONNX: the project's own export (:func:`spaces.deploy.to_onnx`, float weights,
  dynamic batch);
- ``quantize_dynamic``: int8 weights (``QuantType.QInt8``), per-channel, the operators ONNX
  Runtime quantizes by default (``op_types_to_quantize=None``), activations quantized at run
  time; ``reduce_range`` off and on, chosen on validation; after the pre-processing below;
- ``quantize_static``: QDQ format, per-channel int8 weights, activations calibrated on the
  first ``calibration_rows`` rows of the task's TRAIN split (never validation or test), fed in
  whole batches of the study's latency batch size (the input shape that runs; ONNX
  Runtime's histogram calibrators need batches of one shape), after ONNX
  Runtime's recommended pre-processing (``quant_pre_process``: shape inference and graph
  optimisation; skipped where it fails). The grid: every operator ONNX Runtime quantizes (its
  default), every MatMul / Gemm / Conv / Gather, or only those nodes of them with a weight
  (:data:`OP_SETS`), uint8 and int8 activations (ONNX
  Runtime's documentation recommends U8S8 on x86 and S8S8 in QDQ format as the first choice),
  MinMax / Percentile / Entropy calibration, ``reduce_range`` off and on; chosen on
  validation. On CPUs without VNNI (AVX2 only) the uint8 x int8 kernels saturate above
  activation code 127 (frontier's activations use 0-127): ``reduce_range`` is ONNX Runtime's
  answer, so it is measured rather than assumed.

Each variant is scored on validation (chooses) by running its ONNX Runtime session over the
split with the task's metric and extra metrics; the chosen one is scored on the test split too
(reported, 95% bootstrap interval). Its bytes are the length of the quantized ``.onnx`` file,
which is not frontier's packed artifact (both are what would ship; the float ONNX file's
length gives the ratio). :func:`time_side_by_side` times ONNX files and torch models together
as :func:`evaluators.latency.time_interleaved` times a study's front, and :func:`dominators`
says which front points dominate a baseline.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluators.accuracy import AccuracyEvaluator
from evaluators.holdout import bootstrap_interval
from evaluators.latency import (
    LatencySettings,
)
from spaces.deploy import to_onnx
from spaces.task import Split, Task

log = logging.getLogger("frontier")

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("uint8", "int8")
#: Operator types that can hold weights
WEIGHT_OPS = ["MatMul", "Gemm", "Conv", "Gather"]
#: What ``quantize_static`` quantizes: ``"default"`` every operator type ONNX Runtime can (its
#: default), ``"matmul-conv"`` every node of the :data:`WEIGHT_OPS` types (a transformer's
#: attention-mask ``Add`` and softmax stay float, its activation x activation products do
#: not), ``"weight-nodes"`` only those nodes with a weight (an initializer input).
OP_SETS: dict[str, list[str] | None] = {
    "default": None,
    "matmul-conv": WEIGHT_OPS,
    "weight-nodes": WEIGHT_OPS,
}


@dataclass(frozen=True)
class OrtSettings:
    """Which ONNX Runtime quantizations are tried (see the module docstring).

    Attributes:
        calibration_rows: Rows of the train split (the first ones) that calibrate
            ``quantize_static``.
        methods: Calibration methods tried (``"minmax"``, ``"percentile"``, ``"entropy"``).
        activations: Activation types of ``quantize_static`` tried (``"uint8"``, ``"int8"``).
        ops: Operator sets of ``quantize_static`` tried (keys of :data:`OP_SETS`).
        reduce_range: ``reduce_range`` values tried, for both quantizations.
        score_batch: Rows per ONNX Runtime call when scoring a split.
    """

    calibration_rows: int = 64
    methods: tuple[str, ...] = CALIBRATION_METHODS
    activations: tuple[str, ...] = ACTIVATION_TYPES
    ops: tuple[str, ...] = tuple(OP_SETS)
    reduce_range: tuple[bool, ...] = (False, True)
    score_batch: int = 64

    def __post_init__(self) -> None:
        for name in ("calibration_rows", "score_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be an int >= 1. Got {value!r} instead.")
        for name, allowed in (
            ("methods", CALIBRATION_METHODS),
            ("activations", ACTIVATION_TYPES),
            ("ops", tuple(OP_SETS)),
        ):
            values = getattr(self, name)
            if not values or any(v not in allowed for v in values):
                raise ValueError(
                    f"'{name}' must be a non-empty subset of {list(allowed)}. Got {values!r}."
                )
        if not self.reduce_range or any(not isinstance(v, bool) for v in self.reduce_range):
            raise ValueError(f"'reduce_range' must list true/false. Got {self.reduce_range!r}.")


@dataclass(frozen=True)
class Variant:
    """One quantization tried: its options, file and validation figures."""

    options: str
    data: bytes
    val: Mapping[str, float]


@dataclass(frozen=True)
class Baseline:
    """A model scored like a candidate: the chosen variant of a quantization (or the float ONNX).

    Attributes:
        name: ``"float ONNX"``, ``"ORT quantize_dynamic"`` or ``"ORT quantize_static"``.
        options: The options of the chosen variant.
        data: Its ONNX file.
        val: Validation figures (``accuracy`` and the task's extra metrics).
        test: Test figures (``test_accuracy``, ``test_accuracy_low`` / ``_high``, extras).
        tried: Every variant tried, with its validation figures (the choice among them).
    """

    name: str
    options: str
    data: bytes
    val: Mapping[str, float]
    test: Mapping[str, float]
    tried: tuple[Variant, ...] = field(default=())

    @property
    def size_bytes(self) -> int:
        """The ``.onnx`` file's length."""
        return len(self.data)


def onnx_session(data: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``data`` with the options of the latency runtime
    ``onnxruntime`` (:mod:`evaluators.latency.runtimes`): ``threads`` intra-op, one inter-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class OnnxRun:
    """A callable running an ONNX file in one session (a fresh session per :meth:`rebuild`)."""

    def __init__(self, data: bytes, threads: int) -> None:
        self.data, self.threads = data, threads
        self.session = onnx_session(data, threads)
        self.names = [i.name for i in self.session.get_inputs()]

    def rebuild(self, inputs: tuple[torch.Tensor, ...] = ()) -> OnnxRun:
        return OnnxRun(self.data, self.threads)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        feed = {n: t.numpy() for n, t in zip(self.names, inputs, strict=True)}
        return self.session.run(None, feed)


def onnx_outputs(data: bytes, split: Split, *, threads: int = 1, batch: int = 64) -> torch.Tensor:
    """The first output of the ONNX model over every row of ``split``, in order."""
    run = OnnxRun(data, threads)
    outs = [torch.from_numpy(np.asarray(run(*x)[0])) for x, _ in split.batches(batch)]
    return torch.cat(outs).float()


def score(task: Task, outputs: torch.Tensor, split: str) -> dict[str, float]:
    """Figures of ``outputs`` on ``split`` as a candidate gets them: validation
    (``accuracy`` and extras) or test (``test_accuracy``, its 95% interval, extras)."""
    if split == "val":
        return AccuracyEvaluator(task, split="val").score(outputs)
    figures = AccuracyEvaluator(task, split="test", column="test_accuracy").score(outputs)
    low, high = bootstrap_interval(outputs, task.test.targets, task.metric)
    return {**figures, "test_accuracy_low": low, "test_accuracy_high": high}


class TrainReader:
    """ONNX Runtime's ``CalibrationDataReader`` over the first rows of the TRAIN split.

    Yields ``{input name: array}`` in batches of ``batch`` rows (the study's latency batch
    size); ``rows_read`` counts what was handed out (tests spy on it).
    """

    def __init__(self, train: Split, names: Sequence[str], rows: int, batch: int) -> None:
        self.split, self.names, self.batch = train.head(rows), list(names), batch
        self.rows_read = 0
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for inputs, _ in self.split.batches(self.batch):
            self.rows_read += len(inputs[0])
            yield {n: t.numpy() for n, t in zip(self.names, inputs, strict=True)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def calibration_rows(wanted: int, available: int, batch: int) -> int:
    """The train rows that calibrate: at most ``wanted``, whole batches of ``batch`` rows
    (one smaller batch when the split or ``wanted`` holds less than one)."""
    rows = min(wanted, available)
    return max(rows // batch * batch, min(rows, batch))


def _reader_class() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return type("TrainCalibrationReader", (TrainReader, CalibrationDataReader), {})


def _preprocess(src: Path, dst: Path) -> tuple[Path, str]:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # ONNX Runtime's own step; a user would quantize without it
        log.warning("quant_pre_process failed (%s); quantizing the export as it is", exc)
        return src, "no pre-processing (it failed)"
    return dst, "quant_pre_process"


def _dynamic(src: Path, dst: Path, reduce_range: bool) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        src, dst, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8
    )
    return dst.read_bytes()


def _static(
    src: Path, dst: Path, reader: Any, ops: str, method: str, act: str, reduce_range: bool
) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # its calibrators print progress
        quantize_static(
            src,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8 if act == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            op_types_to_quantize=OP_SETS[ops],
            nodes_to_quantize=_weight_nodes(src) if ops == "weight-nodes" else None,
        )
    return dst.read_bytes()


def _weight_nodes(path: Path) -> list[str]:
    """Names of the :data:`WEIGHT_OPS` nodes of the model at ``path`` that have a weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    return [
        n.name
        for n in graph.node
        if n.op_type in WEIGHT_OPS and n.name and any(i in weights for i in n.input)
    ]


def _chosen(name: str, task: Task, tried: list[Variant], threads: int, batch: int) -> Baseline:
    best = max(tried, key=lambda v: v.val["accuracy"])  # the first of equals: grid order
    test = score(task, onnx_outputs(best.data, task.test, threads=threads, batch=batch), "test")
    return Baseline(name, best.options, best.data, best.val, test, tuple(tried))


@dataclass(frozen=True)
class OrtBaselines:
    """The float ONNX and the chosen ``quantize_dynamic`` / ``quantize_static`` variants."""

    float_onnx: Baseline
    dynamic: Baseline
    static: Baseline
    calibration_rows: int
    static_failed: tuple[str, ...] = ()

    @property
    def quantized(self) -> tuple[Baseline, Baseline]:
        return self.dynamic, self.static


def ort_baselines(
    task: Task, latency: LatencySettings, settings: OrtSettings | None = None
) -> OrtBaselines:
    """Quantize ``task``'s teacher with ONNX Runtime and score each variant (module docstring).

    Args:
        task: The study's task (teacher, splits, metric).
        latency: The study's latency settings: the calibration batch size and threads.
        settings: What to try; :class:`OrtSettings` defaults when ``None``.
    """
    settings = settings or OrtSettings()
    threads, sb = latency.threads, settings.score_batch
    rows = calibration_rows(settings.calibration_rows, len(task.train), latency.batch_size)
    example = tuple(t[: latency.batch_size] for t in task.train.inputs)
    float_data = to_onnx(task.model, example, int8=False)

    def variant(options: str, data: bytes) -> Variant:
        outputs = onnx_outputs(data, task.val, threads=threads, batch=sb)
        return Variant(options, data, score(task, outputs, "val"))

    with tempfile.TemporaryDirectory(prefix="ort-baselines-") as tmp:
        folder = Path(tmp)
        src = folder / "float.onnx"
        src.write_bytes(float_data)
        fp = variant("float weights (frontier's export)", float_data)
        pre, how = _preprocess(src, folder / "pre.onnx")
        dynamic = [
            variant(
                f"int8 per-channel weights, default operators, reduce_range={rr}, {how}",
                _dynamic(pre, folder / f"dynamic-{rr}.onnx", rr),
            )
            for rr in settings.reduce_range
        ]
        names = [i.name for i in OnnxRun(float_data, threads).session.get_inputs()]
        reader = _reader_class()(task.train, names, rows, latency.batch_size)
        static: list[Variant] = []
        failed: list[str] = []
        grid = itertools.product(
            settings.ops, settings.activations, settings.methods, settings.reduce_range
        )
        for i, (ops, act, method, rr) in enumerate(grid):
            reader.rewind()
            try:
                data = _static(pre, folder / f"static-{i}.onnx", reader, ops, method, act, rr)
            except Exception as exc:  # one calibration method failing leaves the others
                log.warning("quantize_static %s/%s/%s/%s failed: %s", ops, act, method, rr, exc)
                failed.append(f"{ops}/{act}/{method}/reduce_range={rr}: {exc}")
                continue
            options = (
                f"QDQ, {ops} operators, {act} activations, int8 per-channel weights, {method} "
                "calibration on "
                f"{rows} train rows (batches of {latency.batch_size}), reduce_range={rr}, {how}"
            )
            static.append(variant(options, data))
        if not static:
            raise RuntimeError("Every quantize_static variant failed; see the warnings above.")
    test_fp = score(task, onnx_outputs(float_data, task.test, threads=threads, batch=sb), "test")
    return OrtBaselines(
        float_onnx=Baseline("float ONNX", fp.options, float_data, fp.val, test_fp, (fp,)),
        dynamic=_chosen("ORT quantize_dynamic", task, dynamic, threads, sb),
        static=_chosen("ORT quantize_static", task, static, threads, sb),
        calibration_rows=rows,
        static_failed=tuple(failed),
    )
