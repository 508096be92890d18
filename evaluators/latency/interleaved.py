"""Timing several candidates side by side: interleaved, round-robin, over several rounds.

A latency timed once, while the search ran, carries the machine's state of that moment: the
teacher timed first, a candidate timed an hour later on a machine that had changed speed, or
the luckiest of many noisy timings picked as the best point. Ratios between such figures move
with the machine. Figures people compare are therefore timed together: every round times every
candidate once (in a rotating order, so none is always first or always after the same
neighbour), each with a fresh build of its deployable form (:func:`~evaluators.latency.rebuilt`,
as :func:`~evaluators.latency.measure` builds several), and a candidate's figure is the median
of its round medians. A slow spell of the machine then hits every candidate in that round alike
and moves the median of none.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from evaluators.latency.isolation import timing
from evaluators.latency.measurement import LatencySettings, deployed
from evaluators.latency.quiet import gate
from evaluators.latency.runtimes import Run, rebuilt, time_run

#: Rounds when the caller does not say: each candidate gets this many round medians.
ROUNDS = 5


@dataclass(frozen=True)
class InterleavedLatency:
    """One candidate's figures from :func:`time_interleaved`.

    Attributes:
        latency_ms: The median of its round medians (milliseconds).
        spread: ``(max - min) / median`` of its round medians: how much the figure moved
            between rounds (0 when every round agreed).
        rounds_ms: Its round medians, in round order.
    """

    latency_ms: float
    spread: float
    rounds_ms: tuple[float, ...]


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order candidates are timed in round ``round_index``: rotated by one each round."""
    if not names:
        return []
    k = round_index % len(names)
    return names[k:] + names[:k]


def time_interleaved(
    models: Mapping[str, nn.Module],
    batch: tuple[torch.Tensor, ...],
    settings: LatencySettings,
    *,
    rounds: int = ROUNDS,
    quiet: bool = True,
    device: torch.device | None = None,
) -> dict[str, InterleavedLatency]:
    """Time every model of ``models`` in ``rounds`` interleaved rounds.

    Args:
        models: Candidates by name, each in the form :func:`~evaluators.latency.deployed`
            turns into the deployable form (``settings.runtime``, ``settings.threads``).
        batch: The input tensors (``settings.batch_size`` rows).
        settings: Runtime, threads, warm-up and timed passes per round (``repeats``).
        rounds: Rounds; every round times every model once.
        quiet: Time each pass between two quiet probes of the machine
            (:class:`~evaluators.latency.QuietGate`).
        device: The study's device (see :func:`~evaluators.latency.deployed`).

    Returns:
        Per name, its :class:`InterleavedLatency`.
    """
    if rounds < 1:
        raise ValueError(f"'rounds' must be an int >= 1. Got {rounds!r} instead.")
    names = list(models)
    runs: dict[str, Run] = {}
    medians: dict[str, list[float]] = {name: [] for name in names}
    with timing():  # alone on the machine (evaluators.latency.isolation)
        for r in range(rounds):
            for name in round_order(names, r):
                model = models[name]
                if name not in runs:
                    runs[name] = deployed(model, settings, device=device)
                else:  # a fresh build each round (an ONNX export is made once and shared)
                    runs[name] = rebuilt(
                        runs[name], settings.runtime, model, settings.threads, batch, device
                    )
                medians[name].append(_round_median(runs[name], batch, settings, quiet=quiet))
    return {name: _summary(values) for name, values in medians.items()}


def _round_median(
    run: Run, batch: tuple[torch.Tensor, ...], settings: LatencySettings, *, quiet: bool
) -> float:
    torch.set_num_threads(settings.threads)
    with torch.inference_mode():
        if quiet:
            time_run(run, batch, warmup=settings.warmup, repeats=0)
            seconds = gate().time_blocks(functools.partial(run, *batch), settings.repeats)
            return statistics.median(seconds) * 1e3
        return statistics.median(
            time_run(run, batch, warmup=settings.warmup, repeats=settings.repeats)
        )


def _summary(values: list[float]) -> InterleavedLatency:
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if median > 0 else 0.0
    return InterleavedLatency(median, spread, tuple(values))
