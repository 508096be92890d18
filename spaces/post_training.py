"""Post-training GPTQ rounding of a candidate: layer by layer, in forward order.

A config with ``rounding = "gptq"`` has its integer layers (8 bits or fewer) that are an
``nn.Linear`` or a ``Conv2d`` with ``groups == 1`` rounded by :func:`spaces.gptq.gptq_quantize`
instead of to the nearest code. :func:`gptq_round` runs after structured and unstructured
pruning and before any fine-tuning, and is sequential, as in the GPTQ paper: each layer's
Hessian comes from calibration inputs that pass through the layers already rounded before it,
so a layer compensates the errors of the earlier ones too. Forward order is the order in which
the forward pass reaches the layers. Each calibration pass (a forward pass over
``CALIBRATION_ROWS`` training rows) settles the next layer, with every layer that takes the very
same input tensor (a transformer's query, key and value), and stops right there, so it costs
only the model's prefix: on MiniLM, 24 partial passes instead of 36 whole ones. A layer no pass
reaches (no inputs, no Hessian) is rounded to nearest instead.

With ``rounding = "gptq-onepass"`` every layer's Hessian instead comes from one calibration
pass of the candidate before any rounding (its float weights, after pruning), and each layer is
rounded on its own: one whole pass instead of a prefix pass per layer. The layers no longer
compensate the errors of those before them; measured on MiniLM (4 bits, ``g64``, every
layer), cosine 0.9834 against the sequential 0.9836.

Calibration data is the first :data:`CALIBRATION_ROWS` rows of the task's training split (never
another split), in the task's batch size. The activations are float: this runs before any
activation quantizer is attached (an attached, uncalibrated one would clamp the inputs to its
placeholder range). Layers that are not rounded here (embeddings, grouped and depthwise
convolutions, 16/32-bit layers) keep their float weights during calibration; they are rounded
to nearest or stored as floats afterwards, as for ``"nearest"``.

The scales are exactly those of nearest rounding, ``compute_scale(w, bits,
granularity=...)`` (absmax, or the MSE-clipped group scales), so a GPTQ candidate differs from
its nearest twin only in its integer codes. Pruned weights (exact zeros) stay zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from spaces.config import CompressionConfig
from spaces.devices import device_of, on_device, to_device
from spaces.gptq import HessianAccumulator, conv_inputs, gptq_quantize
from spaces.layers import weight_of
from spaces.quantization import QuantizedWeight, compute_scale, group_size
from spaces.task import Split

__all__ = ["CALIBRATION_ROWS", "gptq_round", "rounds_with_gptq"]

#: Training rows whose inputs give each layer's Hessian (or the whole split when smaller).
#: 256 rows of the digits CNN's 8x8 images give conv layers 16 384 receptive fields and the
#: linear layers 256 input vectors: enough for a stable, dampened inverse at these widths.
CALIBRATION_ROWS = 256


def rounds_with_gptq(layer: nn.Module, bits: int) -> bool:
    """Whether GPTQ rounds ``layer`` at ``bits``: integer ``Linear`` and groups=1 ``Conv2d``."""
    if bits > 8:
        return False
    if isinstance(layer, nn.Conv2d):
        return layer.groups == 1
    return isinstance(layer, nn.Linear)


@torch.no_grad()
def gptq_round(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    masks: Mapping[str, torch.Tensor],
    config: CompressionConfig,
    train: Split,
    batch_size: int,
    *,
    device: torch.device | None = None,
) -> dict[str, QuantizedWeight]:
    """Round the GPTQ layers of ``model`` in place, in forward order; return their codes.

    Every layer's weight is first multiplied by its pruning mask (the passes see the pruned
    model). Each rounded layer's weight is then set to its dequantized codes before the next
    layer's calibration pass.

    A calibration pass hooks every layer still to round and settles the first one the
    forward pass reaches, together with the layers that receive the very same input tensor
    (a transformer's query, key and value projections): their inputs depend only on layers
    already rounded. The pass stops as soon as another layer is reached, so it costs only
    the model's prefix up to there. A layer called twice in one forward pass is calibrated
    on its first call.

    Args:
        model: The candidate (a copy: it is changed).
        layers: Its compressible layers by name, in model order.
        masks: Unstructured pruning masks by layer name.
        config: The candidate's config (bits per layer, granularity).
        train: The task's training split; only its first :data:`CALIBRATION_ROWS` rows are read.
        batch_size: Rows per calibration batch.
        device: Where the calibration passes and the rounding run (the model is moved there
            and back; the codes are returned on the CPU). ``None``: where the model is.
    """
    for name, mask in masks.items():
        weight_of(layers[name]).mul_(mask)
    calibration = train.head(min(CALIBRATION_ROWS, len(train)))
    pending = {n: m for n, m in layers.items() if rounds_with_gptq(m, config.bits_of(n))}
    codes: dict[str, QuantizedWeight] = {}
    was_training = model.training
    model.eval()
    try:
        with on_device(model, device):
            # one pass: every Hessian from the float candidate; else one settling pass per step
            onepass = config.rounding == "gptq-onepass"
            hessians_of = _all_hessians if onepass else _next_hessians
            while pending:
                hessians = hessians_of(model, pending, calibration, batch_size)
                if not hessians:  # the forward pass reaches none of the layers left
                    break
                for name, hessian in hessians.items():
                    layer = pending.pop(name)
                    bits = config.bits_of(name)
                    codes[name] = _round_layer(layer, hessian, bits, config.granularity)
                    weight_of(layer).copy_(codes[name].dequantize())
                if onepass:  # the layers its pass did not reach are rounded to nearest
                    break
    finally:
        model.train(was_training)
    return codes


class _Settled(Exception):
    """Raised from a hook to stop a calibration pass once its layers have their inputs."""


def _next_hessians(
    model: nn.Module, pending: Mapping[str, nn.Module], data: Split, batch_size: int
) -> dict[str, torch.Tensor]:
    """The input Hessians of the layers one calibration pass settles (see :func:`gptq_round`),
    in the order the forward pass reaches them; empty when it reaches none of ``pending``."""
    accumulators: dict[str, HessianAccumulator] = {}
    settled: list[str] | None = None  # fixed by the first batch
    reached: list[str] = []  # this batch's layers, in the order the pass reaches them
    first_input: list[torch.Tensor] = []

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def feed(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            if name in reached or (first_input and x is not first_input[0]):
                raise _Settled  # a second call, or an input that unrounded layers shaped
            if settled is not None and name not in settled:
                raise _Settled
            first_input[:] = [x]
            reached.append(name)
            _accumulate(accumulators, name, module, x)

        return feed

    device = device_of(model)
    with _hooks(pending, hook):
        for inputs, _ in data.batches(batch_size):
            reached.clear()
            first_input.clear()
            with contextlib.suppress(_Settled):  # stopped once its layers had their inputs
                model(*to_device(inputs, device))
            if settled is None:
                settled = list(reached)
                if not settled:
                    return {}
    return {n: accumulators[n].hessian() for n in settled or ()}


def _all_hessians(
    model: nn.Module, pending: Mapping[str, nn.Module], data: Split, batch_size: int
) -> dict[str, torch.Tensor]:
    """The input Hessians of every layer of ``pending`` from whole forward passes of the model
    as it is (float weights): ``"gptq-onepass"``. A layer called twice in one forward pass is
    calibrated on its first call; a layer the passes never reach gets none."""
    accumulators: dict[str, HessianAccumulator] = {}
    reached: set[str] = set()

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def feed(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if name in reached:
                return
            reached.add(name)
            _accumulate(accumulators, name, module, args[0])

        return feed

    device = device_of(model)
    with _hooks(pending, hook):
        for inputs, _ in data.batches(batch_size):
            reached.clear()
            model(*to_device(inputs, device))
    return {n: acc.hessian() for n, acc in accumulators.items()}


_Hook = Callable[[nn.Module, tuple[torch.Tensor, ...]], None]


@contextlib.contextmanager
def _hooks(pending: Mapping[str, nn.Module], hook: Callable[[str], _Hook]) -> Iterator[None]:
    """``hook(name)`` as a forward pre-hook of every layer of ``pending``, removed on exit."""
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in pending.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _accumulate(
    accumulators: dict[str, HessianAccumulator], name: str, module: nn.Module, x: torch.Tensor
) -> None:
    acc = accumulators.setdefault(name, HessianAccumulator())
    acc.add(conv_inputs(x, module) if isinstance(module, nn.Conv2d) else x)


def _round_layer(
    layer: nn.Module, hessian: torch.Tensor, bits: int, granularity: str
) -> QuantizedWeight:
    """GPTQ codes of ``layer``'s weight with exactly the scales nearest rounding would use."""
    w = weight_of(layer).detach().float()
    scale = compute_scale(w, bits, granularity=granularity)
    group = group_size(granularity)
    flat = w.flatten(1)
    # "tensor": one scale for the layer, which gptq_quantize takes as the same scale per row
    per_row = scale.expand(flat.shape[0]) if scale.numel() == 1 else scale
    q, _ = gptq_quantize(flat, hessian, bits, group_size=group, scales=per_row)
    # codes are kept on the CPU, whatever device rounded them: they are packed from there
    return QuantizedWeight(
        q=q.reshape(w.shape).cpu(), scale=scale.half().cpu(), bits=bits, group_size=group
    )
