"""Measuring a model's per-layer sensitivity: each probe applied alone, or estimated.

A probe changes one layer (its weight bits, its unstructured pruning ratio) or one channel
group (its structured pruning ratio) and leaves everything else float, exactly as
:func:`spaces.compress.compress` would change it, without fine-tuning. The measured method
runs the changed model on a fixed subset of the validation split (its first rows) and
compares its outputs with the unchanged model's: the output noise-to-signal ratio, and the
task metric's drop. The Fisher method estimates the noise-to-signal ratio from gradients
(:mod:`spaces.sensitivity.fisher`) at the cost of a few backward passes, whatever the number
of probes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from spaces.layers import compressible_layers, weight_of
from spaces.sensitivity.fisher import fisher_probes
from spaces.sensitivity.perturb import (
    ProbePlan,
    plan_probes,
    pruned_weight,
    quantized_weight,
    rounded_bias,
)
from spaces.sensitivity.table import Probe, SensitivitySettings, SensitivityTable
from spaces.structured import BIAS_CORRECTION_ROWS, prune_channels
from spaces.task import Split, Task
from spaces.training import predict


def measure_sensitivity(
    model: nn.Module,
    task: Task,
    *,
    name: str,
    bits: Mapping[str, Sequence[int]],
    prune_ratios: Mapping[str, Sequence[float]],
    channel_ratios: Mapping[str, Sequence[float]],
    granularity: str,
    settings: SensitivitySettings,
    importance: str = "l2",
    study_rows: int | None = None,
    device: torch.device | None = None,
) -> SensitivityTable:
    """Every probe's effect on ``model``'s outputs, on the first ``settings.rows`` validation rows.

    Args:
        model: The teacher or a distilled student; never changed (probes run on a copy).
        task: The task (its validation split, metric and example input).
        name: ``"teacher"`` or the student's name, recorded in the table.
        bits: Bit widths to probe per layer; widths >= 16 are lossless and not probed.
        prune_ratios: Unstructured pruning ratios to probe per layer.
        channel_ratios: Structured pruning ratios to probe per channel group (by root layer).
        granularity: The weight-scale granularity the candidates will use.
        settings: The method, the rows and (for ``"auto"``) the limits.
        importance: The structured-pruning criterion (``space.channel_importance``).
        study_rows: For ``"auto"``: the rows the study's trials will pass forward at least
            (see :func:`study_forward_rows`); ``None`` when unknown (a time-limited study).
        device: Where the probes' forward (and Fisher's backward) passes run, on copies of
            the model (:mod:`spaces.devices`); ``None``: where the model is.

    Layers or groups ``model`` lacks are skipped, so the teacher's lists serve a student.
    ``"auto"`` times the unchanged model's pass over the rows and measures when the probes'
    estimated cost (that time per probe) is below ``settings.max_probe_s``, or at most
    ``settings.max_probe_share`` of what ``study_rows`` rows cost at the same speed (a lower
    bound on the search's own time: probing every layer is worth it only when the search
    costs much more); else it estimates.
    """
    t0 = time.perf_counter()
    subset = task.val.head(settings.rows)
    plan = plan_probes(model, task.example_input, bits, prune_ratios, channel_ratios)
    t_forward = time.perf_counter()
    reference = predict(model, subset, device=device)
    forward_s = time.perf_counter() - t_forward
    base_metric = task.metric(reference, subset.targets)
    method = settings.method
    if method == "auto":
        method = _auto_method(plan.count * forward_s, forward_s / len(subset), settings, study_rows)
    if method == "measured":
        probes = _measured(
            model, task, subset, reference, base_metric, plan, granularity, importance, device
        )
    else:
        probes = fisher_probes(
            model,
            subset,
            reference,
            plan,
            granularity=granularity,
            example_input=task.example_input,
            importance=importance,
            batch_size=task.batch_size,
            device=device,
        )
    return SensitivityTable(
        model=name,
        method=method,
        metric=task.metric.name,
        base_metric=base_metric,
        rows=len(subset),
        seconds=time.perf_counter() - t0,
        probes=tuple(probes),
    )


def study_forward_rows(n_trials: int, *, val_rows: int, train_rows: int, epochs: int) -> int:
    """The rows a study's trials pass forward at least: each scores the validation split and
    fine-tunes for ``epochs`` over the training split (a backward pass counted as two forward
    ones). Students' distillation, rounding and latency come on top: this is a lower bound."""
    return n_trials * (val_rows + 3 * epochs * train_rows)


def _auto_method(
    probes_s: float, row_s: float, settings: SensitivitySettings, study_rows: int | None
) -> str:
    """``"measured"`` when the probes cost under ``max_probe_s``, or under ``max_probe_share``
    of the study's least cost; else ``"fisher"``."""
    if probes_s < settings.max_probe_s:
        return "measured"
    if study_rows is not None and probes_s <= settings.max_probe_share * study_rows * row_s:
        return "measured"
    return "fisher"


def distortion(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """Output noise-to-signal ratio ``mean((y' - y)^2) / mean(y^2)``."""
    signal = max(float(reference.float().pow(2).mean()), torch.finfo(torch.float32).tiny)
    return float((outputs.float() - reference.float()).pow(2).mean()) / signal


@contextmanager
def _changed(
    layer: nn.Module, new_weight: Callable[[torch.Tensor], torch.Tensor], round_bias: bool
) -> Iterator[None]:
    """The layer's weight replaced for the block, then restored bit for bit."""
    weight = weight_of(layer)
    bias = getattr(layer, "bias", None)
    saved_w = weight.detach().clone()
    saved_b = bias.detach().clone() if isinstance(bias, torch.Tensor) else None
    try:
        with torch.no_grad():
            weight.copy_(new_weight(saved_w))
            if round_bias and isinstance(bias, torch.Tensor):
                bias.copy_(rounded_bias(bias))
        yield
    finally:
        with torch.no_grad():
            weight.copy_(saved_w)
            if isinstance(bias, torch.Tensor) and saved_b is not None:
                bias.copy_(saved_b)


def _measured(
    model: nn.Module,
    task: Task,
    subset: Split,
    reference: torch.Tensor,
    base_metric: float,
    plan: ProbePlan,
    granularity: str,
    importance: str,
    device: torch.device | None,
) -> list[Probe]:
    work = copy.deepcopy(model).eval()  # probed in place, on the device for the whole run
    if device is not None:
        work.to(device)
    layers = compressible_layers(work)

    def probe(kind: str, layer: str, value: float, outputs: torch.Tensor) -> Probe:
        drop = base_metric - task.metric(outputs, subset.targets)
        return Probe(kind, layer, float(value), distortion(outputs, reference), drop)

    probes: list[Probe] = []
    for name, widths in plan.bits.items():
        for bits in widths:
            quantize = partial(quantized_weight, bits=bits, granularity=granularity)
            with _changed(layers[name], quantize, round_bias=True):
                probes.append(probe("bits", name, bits, predict(work, subset, device=device)))
    for name, ratios in plan.prune.items():
        for ratio in ratios:
            with _changed(layers[name], partial(pruned_weight, ratio=ratio), round_bias=False):
                probes.append(probe("prune", name, ratio, predict(work, subset, device=device)))
    for root, ratios in plan.channels.items():
        for ratio in ratios:
            # structured pruning changes shapes: a fresh copy per probe
            pruned = copy.deepcopy(model).eval()
            prune_channels(
                pruned,
                {root: ratio},
                task.example_input,
                importance=importance,
                calibration=task.train.head(BIAS_CORRECTION_ROWS),
                batch_size=task.batch_size,
            )
            outputs = predict(pruned, subset, device=device)
            probes.append(probe("channels", root, ratio, outputs))
    return probes
