"""What each probe does to a layer, exactly as :func:`spaces.compress.compress` would.

Both methods use these: the measured one writes the changed weights into a copy and runs it,
the gradient estimate takes their difference from the original weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces.config import FLOAT_BITS
from spaces.layers import compressible_layers
from spaces.pruning import magnitude_mask
from spaces.quantization import quantize_weight
from spaces.sensitivity.table import LOSSLESS_BITS
from spaces.structured import as_inputs, prunable_groups


@dataclass(frozen=True)
class ProbePlan:
    """Which probes to run on one model: value lists per layer, the model's layers only."""

    bits: dict[str, tuple[int, ...]]
    prune: dict[str, tuple[float, ...]]
    channels: dict[str, tuple[float, ...]]

    @property
    def count(self) -> int:
        return sum(len(v) for d in (self.bits, self.prune, self.channels) for v in d.values())


def plan_probes(
    model: nn.Module,
    example_input: Any,
    bits: Mapping[str, Sequence[int]],
    prune_ratios: Mapping[str, Sequence[float]],
    channel_ratios: Mapping[str, Sequence[float]],
) -> ProbePlan:
    """The probes worth running on ``model``.

    Layers the model lacks (a teacher layer a student dropped) and groups it cannot prune are
    skipped, so the teacher's lists serve every student; bits >= 16 (lossless) and ratio 0
    (nothing changes) are not probed.
    """
    layers = compressible_layers(model)
    wanted_roots = {root for root, ratios in channel_ratios.items() if any(r > 0 for r in ratios)}
    roots = prunable_groups(model, as_inputs(example_input)) if wanted_roots else {}
    return ProbePlan(
        bits={
            layer: tuple(sorted({int(b) for b in widths if b < LOSSLESS_BITS}))
            for layer, widths in bits.items()
            if layer in layers and any(b < LOSSLESS_BITS for b in widths)
        },
        prune={
            layer: tuple(sorted({float(r) for r in ratios if r > 0}))
            for layer, ratios in prune_ratios.items()
            if layer in layers and any(r > 0 for r in ratios)
        },
        channels={
            root: tuple(sorted({float(r) for r in ratios if r > 0}))
            for root, ratios in channel_ratios.items()
            if root in roots and root in wanted_roots
        },
    )


def quantized_weight(w: torch.Tensor, bits: int, *, granularity: str) -> torch.Tensor:
    """The weight a ``bits``-bit layer evaluates with (float16 for 16, as is for 32)."""
    if bits >= FLOAT_BITS:
        return w.detach().clone()
    if bits == 16:
        return w.detach().half().float()
    return quantize_weight(w, bits, granularity=granularity).dequantize().to(w.dtype)


def pruned_weight(w: torch.Tensor, ratio: float) -> torch.Tensor:
    """The weight with its ``ratio`` smallest-magnitude entries set to zero."""
    return w.detach() * magnitude_mask(w, ratio).to(w.dtype)


def rounded_bias(bias: torch.Tensor) -> torch.Tensor:
    """A quantized layer's bias as stored: float16 values."""
    return bias.detach().half().to(bias.dtype)
