"""Apply a `CompressionConfig` to a copy of a model: the one order of operations.

1. start from the chosen student (or the teacher), copied: the original is never touched;
2. structured pruning: whole channels / neurons removed per coupled group (see
   :mod:`spaces.structured`), then whole attention heads per attention block (see
   :mod:`spaces.heads`), so the model is physically smaller; the layers reading removed
   channels keep their mean contribution in their bias (bias correction on training rows);
3. unstructured magnitude pruning, per layer: exactly ``round(ratio * numel)`` zeros;
4. with ``rounding = "gptq"``, post-training rounding: the integer linear layers and groups=1
   convolutions are rounded by GPTQ, layer by layer in model order, on float activations of
   training rows (see :mod:`spaces.post_training`);
5. quantization: weights per layer (see :mod:`spaces.quantization`), and 8-bit activations
   around integer layers when the config asks, ranges calibrated on training batches (see
   :mod:`spaces.activations`), or with ``act_mode = "dynamic"`` each eligible linear layer's
   input quantized with its own range at every pass (see :mod:`spaces.dynamic_acts`);
6. optional recovery fine-tuning, distilled from the teacher: quantization-aware (the forward
   pass sees the quantized weights and activations, gradients pass straight through the
   rounding) with the pruning masks kept, so pruned weights stay zero and the result lies on
   its grid;
7. the weights are replaced by exactly what gets packed, activation ranges are calibrated
   again for those final weights, and the artifact is written.

GPTQ and fine-tuning: without fine-tuning the packed codes are exactly GPTQ's codes (with
nearest rounding's scales), never rounded again. With fine-tuning, the model starts from the
GPTQ-dequantized weights and the quantization-aware fine-tuning continues from there as for
nearest rounding; the final codes are then the trained weights rounded to nearest, as always.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from spaces import activations, dynamic_acts
from spaces.config import FLOAT_BITS, GPTQ_ROUNDINGS, CompressionConfig
from spaces.distillation import StudentPool, kd_loss
from spaces.heads import prune_heads
from spaces.layers import compressible_layers, weight_of
from spaces.packing import pack
from spaces.post_training import gptq_round
from spaces.pruning import magnitude_mask
from spaces.quantization import QuantizedWeight, fake_quantize, mark_quantized, quantize_weight
from spaces.structured import BIAS_CORRECTION_ROWS, prune_channels
from spaces.training import fit


@dataclass(frozen=True)
class FinetuneSettings:
    """Recovery fine-tuning after compression (0 epochs turns it off)."""

    epochs: int = 2
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"'finetune.epochs' must be >= 0. Got {self.epochs} instead.")
        if not self.lr > 0:
            raise ValueError(f"'finetune.lr' must be > 0. Got {self.lr} instead.")


@dataclass(frozen=True)
class Compressed:
    """A compressed model (weights exactly as packed) and its packed artifact."""

    model: nn.Module
    config: CompressionConfig
    artifact: bytes
    codes: dict[str, QuantizedWeight]
    masks: dict[str, torch.Tensor]
    #: GPTQ's codes before any fine-tuning, by layer (``rounding = "gptq"``; else empty): a
    #: later :func:`compress` of the same config reuses them instead of rounding again.
    rounded: dict[str, QuantizedWeight] = field(default_factory=dict)


class _Constrained(nn.Module):
    """Weight parametrization: keep the pruning mask, show the quantized value."""

    def __init__(self, mask: torch.Tensor | None, bits: int, granularity: str) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.bits = bits
        self.granularity = granularity

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if isinstance(mask, torch.Tensor):
            w = w * mask
        return fake_quantize(w, self.bits, granularity=self.granularity)


def compress(
    pool: StudentPool,
    config: CompressionConfig,
    *,
    finetune: FinetuneSettings,
    seed: int,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    importance: str = "l2",
    rounded: Mapping[str, QuantizedWeight] | None = None,
    act_calibration: str = "minmax",
) -> Compressed:
    """Build the candidate described by ``config`` from a copy of the chosen model.

    ``on_epoch(epoch, model)`` runs after each recovery fine-tuning epoch, with the model in
    eval mode showing its masked, quantized weights (and quantized activations); raising from
    it stops the candidate (the exception propagates to the caller). ``importance`` is the
    structured-pruning criterion (``"l1"`` or ``"l2"``). ``rounded`` holds GPTQ's codes for
    this very config from an earlier build (:attr:`Compressed.rounded`, the rung-0 candidate
    of early stopping, say): they are reused instead of rounding again, which gives the same
    model, since pruning is deterministic. ``act_calibration`` is how 8-bit activation
    ranges are chosen (:func:`spaces.activations.calibrate`'s ``method``).
    """
    model = copy.deepcopy(pool.get(config.student))
    task = pool.task
    layers = compressible_layers(model)
    config = config.restricted_to(list(layers))
    prune_channels(
        model,
        config.channels,
        task.example_input,
        importance=importance,
        calibration=task.train.head(BIAS_CORRECTION_ROWS),
        batch_size=task.batch_size,
    )
    prune_heads(model, config.heads)
    masks = {
        name: magnitude_mask(weight_of(layer), config.prune_of(name))
        for name, layer in layers.items()
        if config.prune_of(name) > 0
    }
    gptq: dict[str, QuantizedWeight] = {}
    if config.rounding in GPTQ_ROUNDINGS and rounded is not None:
        gptq = _reuse_rounding(layers, masks, rounded)
    elif config.rounding in GPTQ_ROUNDINGS:  # before activation quantizers: float inputs
        gptq = gptq_round(
            model, layers, masks, config, task.train, task.batch_size, device=pool.device
        )
    act_layers: dict[str, nn.Module] = {}
    if config.act_mode == "dynamic":  # nothing to calibrate: ranges come from each input
        for layer in dynamic_acts.dynamic_layers_of(model, config).values():
            dynamic_acts.attach_dynamic(layer)
    else:
        act_layers = {
            name: layer for name, layer in layers.items() if config.act_bits_of(name) == 8
        }
        for name, layer in act_layers.items():
            activations.attach(layer, qmax=config.act_codes_of(name))

    finetuned = finetune.epochs > 0 and not config.is_identity()
    if finetuned:
        for name, layer in layers.items():
            parametrize.register_parametrization(
                layer,
                "weight",
                _Constrained(masks.get(name), config.bits_of(name), config.granularity),
            )
        # quantization-aware from the first step: ranges seen under the quantized weights
        activations.calibrate(model, act_layers.values(), task.train, method=act_calibration)
        torch.manual_seed(seed)
        task, s = pool.task, pool.settings
        fit(
            model,
            task.train,
            kd_loss(task, pool.teacher_train_outputs(), s.temperature, s.alpha),
            epochs=finetune.epochs,
            lr=finetune.lr,
            batch_size=task.batch_size,
            seed=seed,
            after_epoch=None if on_epoch is None else (lambda epoch: on_epoch(epoch, model)),
            device=pool.device,  # and back: what follows (packing, latency) is on the CPU
        )
        for layer in layers.values():
            # keep the trained float weights; the exact stored values are set just below
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)

    codes = _finalize(layers, masks, config, {} if finetuned else gptq)
    activations.calibrate(model, act_layers.values(), task.train, method=act_calibration)
    artifact = pack(model, codes, {n: config.bits_of(n) for n in layers}, student=config.student)
    return Compressed(
        model=model.eval(),
        config=config,
        artifact=artifact,
        codes=codes,
        masks=masks,
        rounded=gptq,
    )


@torch.no_grad()
def _reuse_rounding(
    layers: dict[str, nn.Module],
    masks: dict[str, torch.Tensor],
    rounded: Mapping[str, QuantizedWeight],
) -> dict[str, QuantizedWeight]:
    """What :func:`spaces.post_training.gptq_round` does to the model, from its codes."""
    for name, mask in masks.items():
        weight_of(layers[name]).mul_(mask)
    for name, code in rounded.items():
        weight_of(layers[name]).copy_(code.dequantize())
    return dict(rounded)


@torch.no_grad()
def _finalize(
    layers: dict[str, nn.Module],
    masks: dict[str, torch.Tensor],
    config: CompressionConfig,
    precomputed: dict[str, QuantizedWeight],
) -> dict[str, QuantizedWeight]:
    """Set every layer's weight to the exact value that is packed; return the integer codes.

    Layers in ``precomputed`` (GPTQ's codes) keep those codes as they are: rounding their
    dequantized weight again could choose other scales (the MSE search) and other codes.
    """
    codes: dict[str, QuantizedWeight] = {}
    for name, layer in layers.items():
        w = weight_of(layer).detach()
        if name in masks:
            w = w * masks[name]
        bits = config.bits_of(name)
        if bits <= 8:
            code = precomputed.get(name)
            if code is None:
                code = quantize_weight(w, bits, granularity=config.granularity)
            codes[name] = code
            w = codes[name].dequantize()
            mark_quantized(layer, codes[name])
        elif bits == 16:
            w = w.half().float()
        weight_of(layer).copy_(w)
        bias = getattr(layer, "bias", None)
        if bits < FLOAT_BITS and isinstance(bias, torch.Tensor):
            bias.copy_(bias.half().float())
    return codes
