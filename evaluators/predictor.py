"""Latency prediction from a per-machine lookup table of measured operator latencies.

A small model on a CPU spends most of its time in per-call overhead, not in arithmetic: a
3x3 convolution over an 8x8 image costs microseconds of dispatch for a few thousand MACs. So
FLOPs say little; what predicts latency is the list of operators a forward pass calls, each
with its own shapes, plus the fixed cost of each module call. This module:

1. traces a candidate's forward pass once (``TorchFunctionMode``) into the operators it calls,
   each keyed by its name and argument shapes (a ``linear`` on 64x512 by 64x512 is one key);
2. looks each key up in a table of latencies measured on this machine, measuring (and
   storing) any key it has not seen, each operator timed alone in a tight loop, only in
   quiet moments of the machine (:mod:`evaluators.quiet`);
3. adds the per-module-call overhead, measured once with a stack of trivial modules;
4. corrects the sum with a linear calibration ``a * sum + g * operators + c``, fitted once
   per table on a fixed family of small synthetic MLPs and CNNs and on the task's teacher and
   students as built (never a candidate), timed for real (quietly) on this machine:
   operators in a chain run a little slower than alone (cold caches, fresh allocations, the
   Python between them).

Tables are JSON files, built once and reused by every later study: one per machine (CPU,
core count, torch version), runtime, thread count and batch size, under
``$FRONTIER_CACHE_DIR/latency`` (default ``~/.cache/frontier/latency``). Weights do not
enter the prediction: in eager PyTorch a quantized (dequantized) or sparse weight costs the
same as a float one, while a student or a structural change does change the operators.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from evaluators._base import Candidate, Evaluator
from evaluators.latency import LatencySettings, deployed, example_batch, measure
from evaluators.quiet import gate
from spaces.task import Task

TABLE_VERSION = 2
_MODULE_KEY = "__module_call__"
_CALIBRATION_KEY = "__calibration__"


def cache_root() -> Path:
    """Where latency tables live: ``$FRONTIER_CACHE_DIR/latency`` or ``~/.cache/frontier``."""
    base = os.environ.get("FRONTIER_CACHE_DIR") or str(Path.home() / ".cache" / "frontier")
    return Path(base) / "latency"


def machine_id() -> str:
    """CPU model, core count, OS and torch version: what a latency table is valid for."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} | {os.cpu_count()} cpus | {platform.system()} | torch {torch.__version__}"


# ---------------------------------------------------------------- tracing


@dataclass(frozen=True)
class OpCall:
    """One operator call of a forward pass, timeable on its own.

    Attributes:
        key: What the table stores it under: operator, argument shapes and settings.
        name: The operator's name, for breakdowns.
        measure: ``measure(budget_s)`` times the call alone and returns milliseconds.
    """

    key: str
    name: str
    measure: Callable[[float], float]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        layout = "" if value.is_contiguous() else "~"
        return f"T{list(value.shape)}{str(value.dtype)[6:]}{layout}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    if isinstance(value, (int, float, bool, str, type(None))):
        return repr(value)[:40]
    return type(value).__name__


def _func_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__module__", None) or ""
    return f"{owner}.{name}" if owner else str(name)


def _frozen_copy(value: Any) -> Any:
    """Tensors copied as they were at call time (later in-place ops must not change them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [_frozen_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_frozen_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen_copy(v) for k, v in value.items()}
    return value


class _Recorder(TorchFunctionMode):
    """Records every top-level torch call (nested calls run with the mode switched off)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _func_name(func)
        key = f"{name}{_describe(args)}{_describe(tuple(sorted(kwargs.items())))}"
        frozen_args, frozen_kwargs = _frozen_copy(args), _frozen_copy(kwargs)

        def measure(budget_s: float) -> float:
            return time_call(func, frozen_args, frozen_kwargs, budget_s=budget_s)

        out = func(*args, **kwargs)
        self.calls.append(OpCall(key, name, measure))
        return out


@dataclass(frozen=True)
class Trace:
    """What one forward pass does: its operator calls and its module calls."""

    ops: list[OpCall]
    module_calls: int


def trace(run: Callable[..., Any], batch: tuple[torch.Tensor, ...]) -> Trace:
    """Run ``run(*batch)`` once and record its operators and module calls."""
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    handle = nn.modules.module.register_module_forward_pre_hook(count)
    recorder = _Recorder()
    try:
        with torch.inference_mode(), recorder:
            run(*batch)
    finally:
        handle.remove()
    return Trace(ops=recorder.calls, module_calls=counter[0])


def trace_deployed(
    model: nn.Module, batch: tuple[torch.Tensor, ...], settings: LatencySettings
) -> Trace:
    """What ``model`` runs in ``settings.runtime``: torch operators for the torch runtimes, the
    optimized graph's nodes for ONNX Runtime (:mod:`evaluators.onnx_ops`)."""
    if settings.runtime == "onnxruntime":
        from evaluators.onnx_ops import trace_onnx

        return trace_onnx(model, batch, settings.threads)
    return trace(deployed(copy.deepcopy(model), settings), batch)


# ---------------------------------------------------------------- timing


def time_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, budget_s: float
) -> float:
    """Median milliseconds of one call, timed in blocks of back-to-back calls, each block in
    a quiet moment of the machine (:mod:`evaluators.quiet`)."""
    with torch.inference_mode():
        for _ in range(3):
            func(*args, **kwargs)
        start = time.perf_counter()
        func(*args, **kwargs)
        once = max(time.perf_counter() - start, 1e-7)
        per_block = max(1, min(200, int(2e-4 / once)))  # blocks of >= 0.2 ms
        blocks = max(7, min(51, int(budget_s / (once * per_block))))

        def block() -> None:
            for _ in range(per_block):
                func(*args, **kwargs)

        samples = gate().time_blocks(block, blocks)
    return statistics.median(samples) / per_block * 1e3


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def module_call_ms(budget_s: float = 0.2) -> float:
    """Cost of one ``nn.Module`` call with no work in it, measured on this machine."""
    depth = 32
    deep = nn.Sequential(*[_Identity() for _ in range(depth)])
    x = torch.zeros(1)
    return time_call(deep, (x,), {}, budget_s=budget_s) / (depth + 1)


def int8_layer(layer: nn.Module) -> None:
    """Give ``layer`` 8-bit weights and activations in place (as a candidate's int8 layer has)."""
    from spaces.activations import QMAX, attach
    from spaces.quantization import mark_quantized, quantize_weight

    code = quantize_weight(layer.weight.detach(), 8)  # type: ignore[operator]
    with torch.no_grad():
        layer.weight.copy_(code.dequantize())  # type: ignore[operator]
    mark_quantized(layer, code)
    mid = float((QMAX + 1) // 2)  # a range around zero, as calibration would give
    attach(layer, torch.tensor([4.0 / QMAX, mid, 8.0 / QMAX, mid]))


def calibration_models(batch_size: int, seed: int = 0) -> list[tuple[nn.Module, torch.Tensor]]:
    """A fixed family of small MLPs and 1-D / 2-D CNNs with their input batches.

    Every other model has some layers with 8-bit weights and activations, so the calibration
    sees the int8 kernels (and the quantize / dequantize around them) candidates run.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(options: list[int]) -> int:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    out: list[tuple[nn.Module, torch.Tensor]] = []
    for i in range(24):
        layers: list[nn.Module] = []
        if i % 3 == 0:
            widths = [pick([8, 16, 32, 64, 128, 256]) for _ in range(pick([2, 3, 4, 5]))]
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.ReLU()]
            x = torch.randn(batch_size, widths[0], generator=gen)
        elif i % 3 == 1:
            length, d = pick([20, 40, 80]), 1
            for _ in range(pick([2, 3, 4])):
                c = pick([4, 8, 16, 32])
                layers += [nn.Conv1d(d, c, 3, padding=1), nn.ReLU()]
                d = c
            layers += [nn.Flatten(), nn.Linear(d * length, 10)]
            x = torch.randn(batch_size, 1, length, generator=gen)
        else:
            side, d = pick([8, 12, 16]), 1
            for _ in range(pick([1, 2, 3])):
                c = pick([4, 8, 16])
                layers += [nn.Conv2d(d, c, 3, padding=1), nn.ReLU()]
                d = c
            layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(d * (side // 2) ** 2, 10)]
            x = torch.randn(batch_size, 1, side, side, generator=gen)
        model = nn.Sequential(*layers).eval()
        if i % 2 == 1:
            for layer in model:
                if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)) and pick([0, 1]):
                    int8_layer(layer)
        out.append((model, x))
    return out


def fit_calibration(
    rows: list[tuple[float, int, float]], weights: list[float] | None = None
) -> tuple[float, float, float]:
    """Weighted least squares on relative error: ``measured ~ a * table_sum + g * n_ops + c``."""
    x = torch.tensor([[lut, n, 1.0] for lut, n, _ in rows], dtype=torch.float64)
    y = torch.tensor([m for _, _, m in rows], dtype=torch.float64)
    w = torch.tensor(weights or [1.0] * len(rows), dtype=torch.float64) / y
    coef = torch.linalg.lstsq(x * w[:, None], (y * w)[:, None]).solution.flatten()
    a, g, c = (float(v) for v in coef)
    return a, g, c


# ---------------------------------------------------------------- the table


class LatencyTable:
    """Measured operator latencies (ms) of one machine, runtime, thread count and batch size.

    Entries are added as new operator shapes are met and saved at once (under a file lock,
    merged with what other processes saved), so a table is built once per machine.
    """

    #: Timing rounds per new op (the fastest kept) and seconds of timing per round.
    ROUNDS = 3
    OP_BUDGET_S = 0.05
    #: Weight of a task's own model against one synthetic model in the calibration fit.
    ANCHOR_WEIGHT = 4.0

    def __init__(self, settings: LatencySettings, root: Path | None = None) -> None:
        self.settings = settings
        ident = json.dumps(
            [TABLE_VERSION, machine_id(), settings.runtime, settings.threads, settings.batch_size]
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        name = f"{settings.runtime}-t{settings.threads}-b{settings.batch_size}-{digest}.json"
        self.path = (root or cache_root()) / name
        self.ident = ident
        self.entries: dict[str, float] = {}
        self.measured = 0  # entries this instance had to measure
        self._load()

    def _load(self) -> None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
            data = json.loads(self.path.read_text())
            if data["ident"] == self.ident:
                self.entries.update({k: float(v) for k, v in data["entries"].items()})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            mine = dict(self.entries)
            self._load()  # keep what others measured meanwhile
            self.entries.update(mine)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ident": self.ident, "entries": self.entries}, indent=0))
            os.replace(tmp, self.path)

    def module_call(self) -> float:
        if _MODULE_KEY not in self.entries:
            self.entries[_MODULE_KEY] = module_call_ms()
            self.measured += 1
        return self.entries[_MODULE_KEY]

    def calibration(
        self, anchors: list[tuple[nn.Module, tuple[torch.Tensor, ...]]] | None = None
    ) -> tuple[float, float, float]:
        """``(a, g, c)`` fitted once on :func:`calibration_models` and ``anchors``.

        ``anchors`` are models of the task at hand (its teacher and students as built, never
        a candidate), weighted :attr:`ANCHOR_WEIGHT` times a synthetic model in the fit: the
        synthetic family fixes the scale, the anchors the task's own shape of overhead. The
        fit is stored per set of anchor architectures.
        """
        anchors = list(anchors or [])
        name = _CALIBRATION_KEY
        if anchors:
            keys = "|".join(architecture_key(m) for m, _ in anchors)
            name += hashlib.sha256(keys.encode()).hexdigest()[:12]
        if name not in self.entries:
            synthetic = [(m, (x,)) for m, x in calibration_models(self.settings.batch_size)]
            models = synthetic + anchors
            weights = [1.0] * len(synthetic) + [self.ANCHOR_WEIGHT] * len(anchors)
            traces = [trace_deployed(model, x, self.settings) for model, x in models]
            timed: list[list[float]] = [[] for _ in models]
            for _ in range(self.ROUNDS):  # round-robin, as for ops; the fastest round is kept
                for i, (model, x) in enumerate(models):
                    timed[i].append(measure(model, x, self.settings, quiet=True)["latency_ms"])
            rows = []
            for t, values in zip(traces, timed, strict=True):
                total = sum(self.lookup_all(t.ops)) + t.module_calls * self.module_call()
                rows.append((total, len(t.ops), min(values)))
            a, g, c = fit_calibration(rows, weights)
            self.entries[name + "a"] = a
            self.entries[name + "g"] = g
            self.entries[name] = c
            self.measured += 1
        e = self.entries
        return e[name + "a"], e[name + "g"], e[name]

    def lookup(self, op: OpCall) -> float:
        """The op's latency; measured now (and kept) when the table lacks it."""
        return self.lookup_all([op])[0]

    def lookup_all(self, ops: list[OpCall]) -> list[float]:
        """Latencies of ``ops``; the ones the table lacks are measured now and kept.

        Each missing op is timed in :attr:`ROUNDS` rounds, round-robin over the missing ops,
        every block of calls between two quiet probes (:mod:`evaluators.quiet`), and keeps
        the fastest round: the table holds the quiet machine's speed, which is what the
        prediction is for.
        """
        missing = list({op.key: op for op in ops if op.key not in self.entries}.values())
        if missing:
            torch.set_num_threads(self.settings.threads)
            rounds: dict[str, list[float]] = {op.key: [] for op in missing}
            for _ in range(self.ROUNDS):
                for op in missing:
                    rounds[op.key].append(op.measure(self.OP_BUDGET_S))
            for key, values in rounds.items():
                self.entries[key] = min(values)
            self.measured += len(missing)
        return [self.entries[op.key] for op in ops]


class LatencyPredictor:
    """Predicts a model's forward latency (ms) at the study's runtime, threads and batch."""

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
        a, g, c = self.table.calibration(self.anchors)
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


def architecture_key(model: nn.Module) -> str:
    """Models with the same modules, shapes and int8 layers share one prediction."""
    from spaces.deploy import int8_layers

    parts = [repr(model)]
    parts += [f"{k}{list(v.shape)}" for k, v in model.state_dict().items()]
    parts += [f"int8:{name}" for name in int8_layers(model)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
