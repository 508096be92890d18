"""Cheap figures computed from a configuration before any training: BOPs and a size bound.

Both come from the *architecture* of the chosen model (the untrained student constructor is
enough: no distillation, no fine-tuning) and the configuration's bits and pruning ratios.

- **BOPs** (bit operations per example) = sum over compressible layers of
  ``MACs x kept fraction x weight bits x activation bits``. MACs are counted on the task's
  example input (one example) with forward hooks, on the architecture after structured
  pruning (shapes do not depend on the weights); the kept fraction is exactly
  ``1 - round(r * numel) / numel`` (pruned weights do no work); activations are 8 bits
  around integer layers of a config with ``act_bits = 8`` and 32 bits elsewhere. An
  embedding lookup does no MACs. BOPs is exact: it depends on nothing that training changes.
- **size_bound_bytes** is a *proven lower bound* on the packed artifact's length
  (:mod:`spaces.packing`). Everything the configuration fixes is counted exactly: every
  tensor that is not a compressible weight (biases, as float16 when the layer has 16 bits or
  fewer; norms; buffers), the float16 scales of each quantized layer (one per output
  channel, one per layer, or one per row and group of a group-wise layer), the 8-byte length
  prefix and the tensor names in the header. The weight *values* are bounded by the
  smallest encoding the packer could pick whatever the trained values are: quantization can
  round any share of a layer's weights to zero, and the packer then stores a bitmask or
  relative indices, so a layer's values can take as little as a few bytes. The bound is
  therefore never above the real size, but for quantized layers it is far below it: it
  catches configurations whose fixed parts alone break a size budget. BOPs is the exact
  cheap figure.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from spaces.activations import BUFFER as ACT_BUFFER
from spaces.config import TEACHER, CompressionConfig
from spaces.heads import prune_structure
from spaces.layers import compressible_layers, weight_of
from spaces.pruning import pruned_count
from spaces.quantization import scale_count


@dataclass(frozen=True)
class LayerShape:
    """What the cheap figures need to know about one compressible layer."""

    numel: int
    channels: int
    macs: int  # multiply-accumulates per example at full density
    bias_numel: int
    weight_shape: tuple[int, ...]  # the number of scales depends on it


@dataclass(frozen=True)
class ArchitectureCost:
    """The configuration-independent parts of one architecture (teacher or a student)."""

    layers: dict[str, LayerShape]
    other_bytes: int  # exact bytes of every tensor that is not a compressible weight or bias
    name_bytes: int  # bytes of every tensor name, each of which the header must hold

    def bops(self, config: CompressionConfig) -> float:
        """Bit operations per example under ``config`` (see the module docstring)."""
        total = 0.0
        for name, shape in self.layers.items():
            kept = shape.numel - pruned_count(shape.numel, config.prune_of(name))
            fraction = kept / shape.numel if shape.numel else 0.0
            total += shape.macs * fraction * config.bits_of(name) * activation_bits(config, name)
        return total

    def macs(self, config: CompressionConfig) -> float:
        """Multiply-accumulates per example left after pruning."""
        total = 0.0
        for name, shape in self.layers.items():
            kept = shape.numel - pruned_count(shape.numel, config.prune_of(name))
            total += shape.macs * (kept / shape.numel if shape.numel else 0.0)
        return total

    def size_lower_bound(self, config: CompressionConfig) -> int:
        """Bytes the packed artifact cannot go below, whatever training does to the weights."""
        total = 8 + self.name_bytes + self.other_bytes
        for name, shape in self.layers.items():
            bits = config.bits_of(name)
            total += shape.bias_numel * (2 if bits <= 16 else 4)
            if bits <= 8:
                # float16 scales: one per output channel, per layer, or per row and group
                total += 2 * scale_count(shape.weight_shape, config.granularity)
                if config.act_bits_of(name) == 8 and config.act_mode == "static":
                    # the layer's activation ranges: a 4-float buffer and its name (dynamic
                    # activations store none: their ranges are computed at run time)
                    total += 4 * 4 + len(f"{name}.{ACT_BUFFER}".encode())
            total += _values_lower_bound(shape.numel, bits)
        return total


def activation_bits(config: CompressionConfig, layer: str) -> int:
    """Bits of ``layer``'s input activations under ``config`` (8 only for integer layers)."""
    return config.act_bits_of(layer)


def _values_lower_bound(numel: int, bits: int) -> int:
    """Smallest payload any zero pattern allows, over the packer's three encodings.

    dense: every value; bitmask: one bit per position plus the non-zeros (at least the mask);
    relidx: at least one entry (an index of >= 1 bit and a value) when anything is non-zero.
    With nothing non-zero only dense and bitmask are candidates.
    """
    value_bytes = math.ceil(numel * bits / 8) if bits <= 8 else numel * (bits // 8)
    mask_bytes = math.ceil(numel / 8)
    one_entry = 1 + (1 if bits <= 8 else bits // 8)
    return min(value_bytes, mask_bytes, one_entry) if numel else 0


def architecture_cost(
    model: nn.Module, example_input: tuple[torch.Tensor, ...]
) -> ArchitectureCost:
    """Measure one architecture: MACs by forward hooks on one example, tensor sizes."""
    layers = compressible_layers(model)
    macs: dict[str, int] = {}

    def hook(name: str) -> object:
        def record(module: nn.Module, _: object, out: torch.Tensor) -> None:
            per_example = out.numel() // max(1, out.shape[0]) if out.dim() else out.numel()
            if isinstance(module, nn.Linear):
                macs[name] = macs.get(name, 0) + per_example * module.in_features
            elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
                fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
                macs[name] = macs.get(name, 0) + per_example * fan_in
            else:  # an embedding lookup multiplies nothing
                macs[name] = macs.get(name, 0)

        return record

    handles = [layer.register_forward_hook(hook(n)) for n, layer in layers.items()]  # type: ignore[arg-type]
    try:
        with torch.inference_mode():
            model.eval()(*(t[:1] for t in example_input))
    finally:
        for h in handles:
            h.remove()
    shapes: dict[str, LayerShape] = {}
    for name, layer in layers.items():
        w = weight_of(layer)
        bias = getattr(layer, "bias", None)
        shapes[name] = LayerShape(
            numel=w.numel(),
            channels=w.shape[0] if w.dim() > 1 else 1,
            macs=macs.get(name, 0),
            bias_numel=bias.numel() if isinstance(bias, torch.Tensor) else 0,
            weight_shape=tuple(w.shape),
        )
    owned = {f"{n}.weight" for n in layers} | {f"{n}.bias" for n in layers}
    state = model.state_dict()
    other = sum(t.numel() * t.element_size() for k, t in state.items() if k not in owned)
    names = sum(len(k.encode()) for k in state)
    return ArchitectureCost(layers=shapes, other_bytes=other, name_bytes=names)


class CostModel:
    """Cheap figures of a task's candidates, one architecture measured once.

    Args:
        teacher: The task's trained model.
        students: Constructors of the student architectures (untrained is enough).
        example_input: The task's example input.
    """

    def __init__(
        self,
        teacher: nn.Module,
        students: dict[str, object],
        example_input: tuple[torch.Tensor, ...],
    ) -> None:
        self.teacher = teacher
        self.students = students
        self.example_input = example_input
        self._costs: dict[tuple[object, ...], ArchitectureCost] = {}

    def architecture(
        self,
        student: str,
        channels: Mapping[str, float] | None = None,
        heads: Mapping[str, float] | None = None,
    ) -> ArchitectureCost:
        """The cost of ``student``, shrunk by structured pruning (``channels``, ``heads``).

        Structured pruning changes shapes only (which channels or heads go depends on the
        weights, how many does not), so it is applied to a copy of the untrained architecture.
        """
        shrink = [
            tuple(sorted((k, v) for k, v in (ratios or {}).items() if v > 0))
            for ratios in (channels, heads)
        ]
        key = (student, *shrink)
        if key not in self._costs:
            if student == TEACHER:
                model = copy.deepcopy(self.teacher) if any(shrink) else self.teacher
            else:
                build = self.students[student]
                model = build()  # type: ignore[operator]
            if any(shrink):
                prune_structure(model, dict(shrink[0]), dict(shrink[1]), self.example_input)
            self._costs[key] = architecture_cost(model, self.example_input)
        return self._costs[key]

    def figures(self, config: CompressionConfig) -> dict[str, float]:
        """``bops``, ``macs`` and ``size_bound_bytes`` of ``config``."""
        arch = self.architecture(config.student, config.channels, config.heads)
        config = config.restricted_to(list(arch.layers))
        return {
            "bops": arch.bops(config),
            "macs": arch.macs(config),
            "size_bound_bytes": float(arch.size_lower_bound(config)),
        }


__all__ = [
    "ArchitectureCost",
    "CostModel",
    "LayerShape",
    "activation_bits",
    "architecture_cost",
]
