"""The gradient estimate of each probe's output distortion, for models too large to probe.

A probe changes a layer's weights by ``dW``. To first order the outputs move by ``J dW``
(``J`` the Jacobian of the outputs in the weights), so the squared output error summed over
the probed rows is ``dW^T G dW`` with ``G = sum_rows J^T J``, the Gauss-Newton matrix of the
output error. Keeping its diagonal (the usual Fisher / HAWQ-style simplification) leaves
``sum(diag(G) * dW^2)``, and the distortion is that over ``numel(y) * mean(y^2)``, the same
noise-to-signal ratio that the measured method reports.

``diag(G)`` is estimated with random Rademacher output projections: for signs ``v`` (one per
output element), the gradient ``g`` of ``sum(v * y)`` satisfies ``E[g^2] = diag(G)`` over the
rows of one batch, so each batch takes a few backward passes and the batches add up.

Channel probes use the same formula with the removed channels' weights and biases as ``dW``
(they become zero). That is an approximation twice over: removing a channel is no small
change, and a BatchNorm after the layer still adds its shift where the channel was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from spaces.devices import to_device
from spaces.layers import compressible_layers, weight_of
from spaces.sensitivity.perturb import (
    ProbePlan,
    pruned_weight,
    quantized_weight,
    rounded_bias,
)
from spaces.sensitivity.table import Probe
from spaces.structured import removed_channels
from spaces.task import Split

#: Random output projections per batch (each is one backward pass).
PROJECTIONS = 4

_Diag = dict[str, tuple[torch.Tensor, torch.Tensor | None]]


def _bias_of(layer: nn.Module) -> torch.Tensor | None:
    bias = getattr(layer, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def gauss_newton_diagonal(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int,
    projections: int = PROJECTIONS,
    seed: int = 0,
    device: torch.device | None = None,
) -> _Diag:
    """``diag(G)`` of every compressible layer's weight and bias, summed over ``split``'s rows.

    Runs on a copy of ``model`` (the model's own gradients are left alone), on ``device``
    when one is given (the signs are drawn on the CPU, the same on every device); the
    diagonals are returned on the CPU.
    """
    work = copy.deepcopy(model).eval()
    if device is not None:
        work.to(device)
    layers = compressible_layers(work)
    params: list[torch.Tensor] = []
    for layer in layers.values():
        params += [p for p in (weight_of(layer), _bias_of(layer)) if p is not None]
    for p in work.parameters():
        p.requires_grad_(any(p is q for q in params))
    diag = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(seed)
    for inputs, _ in split.batches(batch_size):
        with torch.enable_grad():  # also when called under no_grad / inference mode
            out = work(*to_device(inputs, device)).float()
        for k in range(projections):
            signs = torch.randint(0, 2, out.shape, generator=gen).to(out.device, out.dtype) * 2 - 1
            grads = torch.autograd.grad(
                (out * signs).sum(), params, retain_graph=k < projections - 1, allow_unused=True
            )
            for d, g in zip(diag, grads, strict=True):
                if g is not None:
                    d += g.detach() ** 2 / projections
    result: _Diag = {}
    i = 0
    for name, layer in layers.items():
        w = diag[i].cpu()
        i += 1
        b = None
        if _bias_of(layer) is not None:
            b, i = diag[i].cpu(), i + 1
        result[name] = (w, b)
    return result


def fisher_probes(
    model: nn.Module,
    split: Split,
    reference: torch.Tensor,
    plan: ProbePlan,
    *,
    granularity: str,
    example_input: tuple[torch.Tensor, ...],
    importance: str,
    batch_size: int,
    device: torch.device | None = None,
) -> list[Probe]:
    """Estimated distortion of every probe of ``plan`` (``metric_drop`` is ``None``).

    Args:
        model: The model (not changed).
        split: The probed rows.
        reference: The model's outputs on ``split``.
        plan: The probes.
        granularity: The weight-scale granularity the candidates will use.
        example_input: The task's example input (channel groups are traced with it).
        importance: The structured-pruning criterion.
        batch_size: Rows per backward pass.
        device: Where the backward passes run (:func:`gauss_newton_diagonal`).
    """
    diag = gauss_newton_diagonal(model, split, batch_size=batch_size, device=device)
    signal = float(reference.float().pow(2).mean()) * reference.numel()
    signal = max(signal, torch.finfo(torch.float32).tiny)
    layers = compressible_layers(model)

    def estimate(name: str, dw: torch.Tensor, db: torch.Tensor | None) -> float:
        gw, gb = diag[name]
        total = float((gw * dw.float() ** 2).sum())
        if gb is not None and db is not None:
            total += float((gb * db.float() ** 2).sum())
        return total / signal

    def changed(name: str, new_w: Callable[[torch.Tensor], torch.Tensor], round_b: bool) -> float:
        w = weight_of(layers[name]).detach()
        b = _bias_of(layers[name])
        db = rounded_bias(b) - b.detach() if round_b and b is not None else None
        return estimate(name, new_w(w) - w, db)

    probes: list[Probe] = []
    for name, widths in plan.bits.items():
        for bits in widths:
            quantize = partial(quantized_weight, bits=bits, granularity=granularity)
            d = changed(name, quantize, True)
            probes.append(Probe("bits", name, float(bits), d, None))
    for name, ratios in plan.prune.items():
        for ratio in ratios:
            d = changed(name, partial(pruned_weight, ratio=ratio), False)
            probes.append(Probe("prune", name, ratio, d, None))
    for root, ratios in plan.channels.items():
        for ratio in ratios:
            removed = removed_channels(model, root, ratio, example_input, importance=importance)
            d = 0.0
            for name, idxs in removed.items():
                w = weight_of(layers[name]).detach()
                b = _bias_of(layers[name])
                dw = torch.zeros_like(w)
                dw[idxs] = -w[idxs]
                db = None
                if b is not None:
                    db = torch.zeros_like(b.detach())
                    db[idxs] = -b.detach()[idxs]
                d += estimate(name, dw, db)
            probes.append(Probe("channels", root, ratio, d, None))
    return probes
