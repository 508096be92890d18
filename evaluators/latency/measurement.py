"""Measured latency: a candidate timed in the form that would ship, with fixed threads and batch
size (:class:`LatencySettings`, :func:`measure`, :class:`LatencyEvaluator`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from evaluators._base import Candidate, Evaluator
from evaluators.latency.isolation import timing
from evaluators.latency.quiet import gate
from evaluators.latency.runtimes import RUNTIMES, rebuilt, runner, summarize, time_run
from spaces.task import Task

#: ``measured``: every candidate is timed. ``predicted``: the search uses the per-machine
#: lookup-table prediction (:mod:`evaluators.latency.predictor`) and only the front is timed.
LATENCY_MODES = ("measured", "predicted")


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured.

    Attributes:
        batch_size: Rows per forward pass.
        threads: torch intra-op threads while measuring (and for the whole study).
        warmup: Untimed forward passes first.
        repeats: Timed forward passes; the median is reported (at least 30).
        runtime: Where the candidate runs, in its deployable form: ``"torch"`` (eager,
            float32), ``"torch-int8"`` (torch's int8 kernels for 8-bit layers) or
            ``"onnxruntime"`` (ONNX Runtime, int8 QDQ for 8-bit layers); see
            :mod:`evaluators.latency.runtimes`.
        mode: ``"measured"`` (time every candidate) or ``"predicted"`` (search on the
            lookup-table prediction, then time the front).
        builds: Deployable forms built per measurement, the timed passes split among them
            (see :func:`measure`).
        quiet: Time each pass only in a quiet moment of the machine
            (:mod:`evaluators.latency.quiet`): repeatable figures on a machine whose speed
            changes under it, at the cost of waiting for quiet moments (see
            :class:`evaluators.latency.quiet.QuietGate`). Predicted latency always means this.
    """

    batch_size: int = 64
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    runtime: str = "torch"
    mode: str = "measured"
    builds: int = 5
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "threads", "builds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'latency.{name}' must be an int >= 1. Got {value!r} instead.")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"'latency.warmup' must be an int >= 0. Got {self.warmup!r} instead.")
        if not isinstance(self.repeats, int) or self.repeats < 30:
            raise ValueError(
                f"'latency.repeats' must be an int >= 30. Got {self.repeats!r} instead."
            )
        if not isinstance(self.quiet, bool):
            raise ValueError(f"'latency.quiet' must be true or false. Got {self.quiet!r} instead.")
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"'latency.runtime' must be one of {sorted(RUNTIMES)}. "
                f"Got {self.runtime!r} instead."
            )
        if self.mode not in LATENCY_MODES:
            raise ValueError(
                f"'latency.mode' must be one of {list(LATENCY_MODES)}. Got {self.mode!r} instead."
            )


def example_batch(task: Task, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``batch_size`` validation rows (repeated when the split is smaller)."""
    rows = torch.arange(batch_size) % len(task.val)
    return tuple(t[rows] for t in task.val.inputs)


def deployed(
    model: torch.nn.Module, settings: LatencySettings, *, device: torch.device | None = None
) -> Callable[..., object]:
    """The candidate as it runs in ``settings.runtime``: a callable taking the input tensors.

    Every latency figure (measured, predicted, re-measured) goes through this one function;
    the runtimes themselves live in :mod:`evaluators.latency.runtimes`. ``device``: the
    study's device; a CUDA one runs the runtime's CUDA form where it has one
    (:func:`~evaluators.latency.runtimes.runner`).
    """
    return runner(settings.runtime, model, threads=settings.threads, device=device)


def measure(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, ...],
    settings: LatencySettings,
    *,
    quiet: bool | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """``model``'s latency figures (:func:`summarize`) as deployed with ``settings`` (on
    ``device`` where the runtime has a CUDA form; see :func:`deployed`).

    Two builds of one model can differ for their whole life: on this project's machines
    about one ONNX Runtime session in five runs 1.3-1.8x slower than the others (where its
    buffers land). So the measurement builds the deployable form ``settings.builds`` times,
    gives each ``warmup`` untimed passes and a share of the ``repeats`` timed ones, and
    summarises the pooled times: the median is that of a typical build.

    With ``quiet`` (default: ``settings.quiet``) each timed pass runs between two quiet probes
    of the machine (:mod:`evaluators.latency.quiet`): the latency of the unloaded machine,
    repeatable on a machine whose speed changes under it; what the latency predictor predicts.

    The timed builds run alone on the machine: under the exclusive machine lock
    (:func:`evaluators.latency.isolation.timing`), while no other frontier process computes.
    """
    quiet = settings.quiet if quiet is None else quiet
    share = -(-settings.repeats // settings.builds)
    times: list[float] = []
    run = deployed(model, settings, device=device)
    with timing():  # alone on the machine (evaluators.latency.isolation)
        for build in range(settings.builds):
            if build:  # a fresh build; an ONNX export is made once and shared
                run = rebuilt(run, settings.runtime, model, settings.threads, batch, device)
            torch.set_num_threads(settings.threads)
            with torch.inference_mode():
                if quiet:
                    time_run(run, batch, warmup=settings.warmup, repeats=0)
                    seconds = gate().time_blocks(functools.partial(run, *batch), share)
                    times += [s * 1e3 for s in seconds]
                else:
                    times += time_run(run, batch, warmup=settings.warmup, repeats=share)
    return summarize(times)


class LatencyEvaluator(Evaluator):
    """Median wall time of a forward pass, in milliseconds, plus p90 and spread (:func:`measure`).

    Returns ``latency_ms`` (median), ``latency_p90_ms`` and ``latency_cv`` (standard deviation
    over mean), so that a noisy measurement is visible in the results. ``device``: the
    study's device (see :func:`deployed`).
    """

    def __init__(
        self, task: Task, settings: LatencySettings, *, device: torch.device | None = None
    ) -> None:
        self.settings = settings
        self.device = device
        self.batch = example_batch(task, settings.batch_size)

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        return measure(candidate.model, self.batch, self.settings, device=self.device)
