"""Dynamic 8-bit activations: each input tensor quantized with its own range, at every pass.

A layer with dynamic activations (``act_mode = "dynamic"``) quantizes its input exactly as
ONNX Runtime's ``DynamicQuantizeLinear`` does, per tensor, to unsigned 8-bit codes 0-255::

    lo, hi = min(0, min x), max(0, max x)
    scale = (hi - lo) / 255                       (float32; 1 when the tensor is all zeros)
    zero_point = clamp(round(-lo / scale), 0, 255)
    q = clamp(round(x / scale) + zero_point, 0, 255)   (round half to even)

and computes with ``(q - zero_point) * scale`` against its integer weights; the output stays
float (as ``MatMulInteger`` + ``Cast`` + ``Mul``, fused by ONNX Runtime into
``DynamicQuantizeMatMul``, computes it: the integer accumulation is exact, the rest is float).
Nothing is calibrated and nothing is stored: the mode lives in the config, and the hooks are
attached again when an artifact is loaded. In training the rounding passes gradients straight
through (the range always covers the tensor, so nothing is clipped).

Which layers (:func:`dynamic_eligible`): ``nn.Linear`` layers whose weights have at most
:data:`spaces.config.DYNAMIC_MAX_WEIGHT_BITS` bits (7) and one scale per output row or per
layer. The width bound keeps the integer kernels exact on every x86 CPU: without VNNI they
multiply uint8 by int8 with ``vpmaddubsw``, which saturates an int16 sum of two products;
255 * 63 * 2 = 32130 never does, 255 * 127 * 2 would. 8-bit-weight layers therefore keep float
activations (weight-only) in this mode. Group-wise layers with several groups a row have no
integer-accumulator kernel (a row's products need several scales) and convolutions are left
to static activations: both keep float activations here.

The quantization depends on the whole input tensor, so a layer's result depends on the batch
it is computed in (its largest value sets the range): the evaluated numbers are those of the
evaluation batches, the deployed ones those of the deployed batches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spaces.config import DYNAMIC_MAX_WEIGHT_BITS, CompressionConfig
from spaces.layers import compressible_layers
from spaces.quantization import group_size, weight_codes

QMIN, QMAX = 0, 255
#: The attribute marking a layer with dynamic activations (plain, so deep copies keep it).
MARK = "dynamic_acts"


def dynamic_qparams(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` of ``DynamicQuantizeLinear`` for ``x`` (float32 scalars)."""
    x = x.detach().float()
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(-lo / scale), QMIN, QMAX)
    return scale, zero_point


def dynamic_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(codes, scale, zero_point)``: ``x``'s uint8 codes (as float) and their parameters."""
    scale, zero_point = dynamic_qparams(x)
    q = torch.clamp(torch.round(x.detach().float() / scale) + zero_point, QMIN, QMAX)
    return q, scale, zero_point


class _DynamicFakeQuant(torch.autograd.Function):
    """``dequantize(quantize(x))`` with a per-call range; straight-through gradient.

    Exported (ONNX) as ``DynamicQuantizeLinear`` + ``DequantizeLinear``: the same numbers.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        q, scale, zero_point = dynamic_quantize(x)
        return ((q - zero_point) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad

    @staticmethod
    def symbolic(g: Any, x: Any) -> Any:
        q, scale, zero_point = g.op("DynamicQuantizeLinear", x, outputs=3)
        out = g.op("DequantizeLinear", q, scale, zero_point)
        out.setType(x.type())
        return out


def fake_quantize_dynamic(x: torch.Tensor) -> torch.Tensor:
    """``x`` on its own uint8 grid (see the module docstring); gradients pass straight."""
    out: torch.Tensor = _DynamicFakeQuant.apply(x)
    return out


def _pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    if not args[0].is_floating_point():
        return args
    return (fake_quantize_dynamic(args[0]), *args[1:])


def dynamic_eligible(layer: nn.Module, bits: int, granularity: str) -> bool:
    """Whether ``layer`` at ``bits``-bit weights and ``granularity`` takes dynamic activations:
    an ``nn.Linear`` of at most 7 bits with one weight scale per row or per layer."""
    if not isinstance(layer, nn.Linear) or bits > DYNAMIC_MAX_WEIGHT_BITS:
        return False
    g = group_size(granularity)
    return g is None or layer.in_features <= g


def dynamic_layers_of(model: nn.Module, config: CompressionConfig) -> dict[str, nn.Module]:
    """The layers of ``model`` that ``config`` gives dynamic activations (none in static mode)."""
    if config.act_mode != "dynamic" or config.act_bits != 8:
        return {}
    return {
        name: layer
        for name, layer in compressible_layers(model).items()
        if dynamic_eligible(layer, config.bits_of(name), config.granularity)
    }


def attach_dynamic(layer: nn.Module) -> None:
    """Give ``layer`` dynamic 8-bit input activations (idempotent)."""
    if has_dynamic_activations(layer):
        return
    setattr(layer, MARK, True)
    layer.register_forward_pre_hook(_pre_hook)  # a module-level function: deep copies work


def has_dynamic_activations(layer: nn.Module) -> bool:
    return getattr(layer, MARK, False) is True


def dynamic_int8_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Layers of ``model`` with dynamic activations and per-row / per-layer integer codes."""
    out: dict[str, nn.Linear] = {}
    for name, layer in compressible_layers(model).items():
        if not (isinstance(layer, nn.Linear) and has_dynamic_activations(layer)):
            continue
        code = weight_codes(layer)
        if code is None or code.bits > DYNAMIC_MAX_WEIGHT_BITS:
            continue
        if code.group_size is not None and not (code.scale.dim() == 2 and code.scale.shape[1] == 1):
            continue
        out[name] = layer
    return out


@dataclass(frozen=True)
class _Codes:
    """A layer's int8 codes ``(N, K)`` and float32 scales (``(N,)`` or scalar), held outside
    torch tensors so that the exporter passes them to ``symbolic`` as they are."""

    q: torch.Tensor
    scale: torch.Tensor


class _IntegerLinear(torch.autograd.Function):
    """The layer's float simulation in torch; its integer form when exported to ONNX:
    ``DynamicQuantizeLinear`` -> ``MatMulInteger`` (int8 codes, zero point 0) -> ``Cast`` ->
    ``Mul`` (input scale times weight scales), as ONNX Runtime's ``quantize_dynamic`` writes
    it (fused by ONNX Runtime into ``DynamicQuantizeMatMul``). The bias is added after."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, codes: _Codes) -> Any:
        weight = codes.q.float() * (
            codes.scale.reshape(-1, 1) if codes.scale.dim() else codes.scale
        )
        return F.linear(fake_quantize_dynamic(x), weight)

    @staticmethod
    def symbolic(g: Any, x: Any, codes: _Codes) -> Any:
        q, x_scale, x_zero = g.op("DynamicQuantizeLinear", x, outputs=3)
        w = g.op("Constant", value_t=codes.q.t().contiguous())
        w_zero = g.op("Constant", value_t=torch.zeros(codes.scale.shape, dtype=torch.int8))
        acc = g.op("MatMulInteger", q, w, x_zero, w_zero)
        w_scale = g.op("Constant", value_t=codes.scale)
        s = g.op("Mul", x_scale, w_scale)
        out = g.op("Mul", g.op("Cast", acc, to_i=1), s)  # 1: FLOAT
        sizes = x.type().varyingSizes()  # the output type, for the exporter's shape inference
        if sizes is not None:
            out.setType(x.type().with_sizes([*sizes[:-1], int(codes.q.shape[0])]))
        return out


def _integer_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _IntegerLinear.apply(x, self._dyn_codes)
    return out if self.bias is None else out + self.bias


def dynamic_export_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose :func:`dynamic_int8_layers` export as integer ``MatMul``s.

    Only the export changes (the copy computes what ``model`` computes); their input
    quantization moves into the exported operator, so their hook is removed.
    """
    out = copy.deepcopy(model).eval()
    for layer in dynamic_int8_layers(out).values():
        code = weight_codes(layer)
        if code is None:  # pragma: no cover - dynamic_int8_layers checked it
            continue
        for key, hook in list(layer._forward_pre_hooks.items()):
            if hook is _pre_hook:
                del layer._forward_pre_hooks[key]
        scale = code.scale.float().reshape(-1)
        layer._dyn_codes = _Codes(  # type: ignore[assignment]
            q=code.q.to(torch.int8), scale=scale if scale.numel() > 1 else scale.reshape(())
        )
        layer.forward = MethodType(_integer_forward, layer)  # type: ignore[method-assign]
    return out
