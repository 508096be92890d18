"""Latency prediction from a per-machine lookup table of measured operator latencies.

A small model on a CPU spends most of its time in per-call overhead, not in arithmetic: a
3x3 convolution over an 8x8 image costs microseconds of dispatch for a few thousand MACs. So
FLOPs say little; what predicts latency is the list of operators a forward pass calls, each
with its own shapes, plus the fixed cost of each module call. This module:

1. traces a candidate's forward pass once (``TorchFunctionMode``) into the operators it calls,
   each keyed by its name and argument shapes (a ``linear`` on 64x512 by 64x512 is one key);
2. looks each key up in a table of latencies measured on this machine, measuring (and
   storing) any key it has not seen, each operator timed alone in a tight loop;
3. adds the per-module-call overhead, measured once with a stack of trivial modules;
4. corrects the sum with a linear calibration ``a * sum + g * operators + c``, fitted once
   per table on a fixed family of small synthetic MLPs and CNNs (never the study's own
   models) timed for real on this machine: operators in a chain run a little slower than
   alone (cold caches, fresh allocations, the Python between them).

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
from evaluators._task import Task
from evaluators.latency import LatencySettings, deployed, example_batch, summarize, time_forward

TABLE_VERSION = 1
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
    """One operator call of a forward pass, re-runnable on its own."""

    key: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


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
        key = f"{_func_name(func)}{_describe(args)}{_describe(tuple(sorted(kwargs.items())))}"
        frozen = OpCall(key, func, _frozen_copy(args), _frozen_copy(kwargs))
        out = func(*args, **kwargs)
        self.calls.append(frozen)
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


# ---------------------------------------------------------------- timing


def time_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, budget_s: float
) -> float:
    """Median milliseconds of one call, timed in blocks of back-to-back calls."""
    with torch.inference_mode():
        for _ in range(3):
            func(*args, **kwargs)
        start = time.perf_counter()
        func(*args, **kwargs)
        once = max(time.perf_counter() - start, 1e-7)
        per_block = max(1, min(200, int(2e-4 / once)))  # blocks of >= 0.2 ms
        blocks = max(7, min(51, int(budget_s / (once * per_block))))
        samples = []
        for _ in range(blocks):
            start = time.perf_counter()
            for _ in range(per_block):
                func(*args, **kwargs)
            samples.append((time.perf_counter() - start) / per_block)
    return statistics.median(samples) * 1e3


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def module_call_ms(budget_s: float = 0.2) -> float:
    """Cost of one ``nn.Module`` call with no work in it, measured on this machine."""
    depth = 32
    deep = nn.Sequential(*[_Identity() for _ in range(depth)])
    x = torch.zeros(1)
    return time_call(deep, (x,), {}, budget_s=budget_s) / (depth + 1)


def calibration_models(batch_size: int, seed: int = 0) -> list[tuple[nn.Module, torch.Tensor]]:
    """A fixed family of small MLPs and 1-D / 2-D CNNs with their input batches."""
    gen = torch.Generator().manual_seed(seed)

    def pick(options: list[int]) -> int:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    out: list[tuple[nn.Module, torch.Tensor]] = []
    for i in range(18):
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
        out.append((nn.Sequential(*layers).eval(), x))
    return out


def fit_calibration(rows: list[tuple[float, int, float]]) -> tuple[float, float, float]:
    """Least squares on relative error: ``measured ~ a * table_sum + g * n_ops + c``."""
    x = torch.tensor([[lut, n, 1.0] for lut, n, _ in rows], dtype=torch.float64)
    y = torch.tensor([m for _, _, m in rows], dtype=torch.float64)
    w = 1.0 / y
    coef = torch.linalg.lstsq(x * w[:, None], (y * w)[:, None]).solution.flatten()
    a, g, c = (float(v) for v in coef)
    return a, g, c


# ---------------------------------------------------------------- the table


class LatencyTable:
    """Measured operator latencies (ms) of one machine, runtime, thread count and batch size.

    Entries are added as new operator shapes are met and saved at once (under a file lock,
    merged with what other processes saved), so a table is built once per machine.
    """

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

    def calibration(self) -> tuple[float, float, float]:
        """``(a, g, c)`` of this table, fitted once on :func:`calibration_models`."""
        if _CALIBRATION_KEY not in self.entries:
            rows = []
            for model, x in calibration_models(self.settings.batch_size):
                run = deployed(model, self.settings)
                t = trace(run, (x,))
                total = sum(self.lookup(op) for op in t.ops) + t.module_calls * self.module_call()
                timed = [summarize(time_forward(run, (x,), self.settings)) for _ in range(3)]
                measured = statistics.median(f["latency_ms"] for f in timed)
                rows.append((total, len(t.ops), measured))
            a, g, c = fit_calibration(rows)
            self.entries[_CALIBRATION_KEY + "a"] = a
            self.entries[_CALIBRATION_KEY + "g"] = g
            self.entries[_CALIBRATION_KEY] = c
            self.measured += 1
        e = self.entries
        return e[_CALIBRATION_KEY + "a"], e[_CALIBRATION_KEY + "g"], e[_CALIBRATION_KEY]

    def lookup(self, op: OpCall) -> float:
        """The op's latency; measured now (and kept) when the table lacks it."""
        if op.key not in self.entries:
            torch.set_num_threads(self.settings.threads)
            self.entries[op.key] = time_call(op.func, op.args, op.kwargs, budget_s=0.15)
            self.measured += 1
        return self.entries[op.key]


class LatencyPredictor:
    """Predicts a model's forward latency (ms) at the study's runtime, threads and batch."""

    def __init__(self, task: Task, settings: LatencySettings, root: Path | None = None) -> None:
        if settings.runtime != "torch":
            raise ValueError(
                "'latency.mode' = \"predicted\" supports 'latency.runtime' = \"torch\" only. "
                f"Got {settings.runtime!r} instead."
            )
        self.settings = settings
        self.batch = example_batch(task, settings.batch_size)
        self.table = LatencyTable(settings, root)
        self._by_architecture: dict[str, float] = {}

    def breakdown(self, model: nn.Module) -> dict[str, float]:
        """Milliseconds by operator name (summed over calls and calibrated), module calls and
        the calibration's per-operator and fixed terms; the values add up to the prediction.
        """
        torch.set_num_threads(self.settings.threads)
        a, g, c = self.table.calibration()
        t = trace(deployed(copy.deepcopy(model), self.settings), self.batch)
        parts: dict[str, float] = {}
        for op in t.ops:
            name = op.key.split("(", 1)[0].split("[", 1)[0]
            parts[name] = parts.get(name, 0.0) + a * self.table.lookup(op)
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
    """Models with the same modules and shapes share one prediction."""
    parts = [repr(model)]
    parts += [f"{k}{list(v.shape)}" for k, v in model.state_dict().items()]
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
