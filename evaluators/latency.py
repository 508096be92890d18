"""Latency: measured, in the form that would ship, with fixed threads and batch size."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evaluators._base import Candidate, Evaluator
from evaluators._task import Task
from evaluators.runtimes import RUNTIMES, summarize, time_model


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
            :mod:`evaluators.runtimes`.
    """

    batch_size: int = 64
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    runtime: str = "torch"

    def __post_init__(self) -> None:
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'latency.{name}' must be an int >= 1. Got {value!r} instead.")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"'latency.warmup' must be an int >= 0. Got {self.warmup!r} instead.")
        if not isinstance(self.repeats, int) or self.repeats < 30:
            raise ValueError(
                f"'latency.repeats' must be an int >= 30. Got {self.repeats!r} instead."
            )
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"'latency.runtime' must be one of {sorted(RUNTIMES)}. "
                f"Got {self.runtime!r} instead."
            )


def example_batch(task: Task, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``batch_size`` validation rows (repeated when the split is smaller)."""
    rows = torch.arange(batch_size) % len(task.val)
    return tuple(t[rows] for t in task.val.inputs)


class LatencyEvaluator(Evaluator):
    """Median wall time of a forward pass, in milliseconds, plus p90 and spread.

    Returns ``latency_ms`` (median), ``latency_p90_ms`` and ``latency_cv`` (standard deviation
    over mean), so that a noisy measurement is visible in the results.
    """

    def __init__(self, task: Task, settings: LatencySettings) -> None:
        self.settings = settings
        self.batch = example_batch(task, settings.batch_size)

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        s = self.settings
        times = time_model(
            s.runtime,
            candidate.model.eval(),
            self.batch,
            threads=s.threads,
            warmup=s.warmup,
            repeats=s.repeats,
        )
        torch.set_num_threads(s.threads)
        return summarize(times)
