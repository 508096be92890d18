"""Weight quantization: symmetric, per output channel, round to nearest, clamp.

A ``b``-bit layer stores integers in ``[-(2**(b-1) - 1), 2**(b-1) - 1]`` (the symmetric
"restricted" range, so that zero is exact and a pruned weight stays pruned) and one float16
scale per output channel. The model that is evaluated uses exactly ``q * scale`` with the
float16 scale, so the evaluated model and the packed artifact hold the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# float16 scales: the smallest normal float16 keeps scales away from zero and subnormals.
_MIN_SCALE = 2.0**-14
_MAX_SCALE = 65504.0


def qmax(bits: int) -> int:
    """Largest integer magnitude of a ``bits``-bit symmetric code."""
    if not 2 <= bits <= 8:
        raise ValueError(f"Integer quantization takes 2 to 8 bits. Got {bits} instead.")
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer codes and their per-channel scales; ``dequantize()`` gives the float weight."""

    q: torch.Tensor  # int8 codes, same shape as the weight
    scale: torch.Tensor  # float16, one per output channel (dim 0) or a single element
    bits: int

    def dequantize(self) -> torch.Tensor:
        scale = self.scale.float()
        if scale.numel() > 1:
            scale = scale.reshape(-1, *([1] * (self.q.dim() - 1)))
        return self.q.float() * scale


def compute_scale(w: torch.Tensor, bits: int, *, per_channel: bool = True) -> torch.Tensor:
    """Symmetric scales (float16 values held in a float32 tensor) for ``w``."""
    w = w.detach()
    if per_channel and w.dim() > 1:
        amax = w.abs().reshape(w.shape[0], -1).amax(dim=1)
    else:
        amax = w.abs().amax().reshape(1)
    scale = (amax / qmax(bits)).clamp(_MIN_SCALE, _MAX_SCALE)
    return scale.half().float()


def _broadcast(scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return scale.reshape(-1, *([1] * (w.dim() - 1))) if scale.numel() > 1 else scale


def quantize_weight(w: torch.Tensor, bits: int, *, per_channel: bool = True) -> QuantizedWeight:
    """Quantize ``w`` to ``bits``-bit integer codes with float16 scales."""
    scale = compute_scale(w, bits, per_channel=per_channel)
    m = qmax(bits)
    q = torch.clamp(torch.round(w.detach().float() / _broadcast(scale, w)), -m, m)
    return QuantizedWeight(q=q.to(torch.int8), scale=scale.half(), bits=bits)


class _RoundSTE(torch.autograd.Function):
    """Round in the forward pass, identity gradient in the backward pass."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _Fp16STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.half().float()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def fake_quantize(w: torch.Tensor, bits: int, *, per_channel: bool = True) -> torch.Tensor:
    """Differentiable ``dequantize(quantize(w))`` using a straight-through estimator.

    The forward value equals ``quantize_weight(w, bits).dequantize()``; gradients pass
    through the rounding unchanged (clamped values get the gradient too, as in LSQ-free QAT).
    """
    if bits >= 32:
        return w
    if bits == 16:
        out: torch.Tensor = _Fp16STE.apply(w)
        return out
    scale = _broadcast(compute_scale(w, bits, per_channel=per_channel), w)
    m = qmax(bits)
    q = torch.clamp(_RoundSTE.apply(w / scale), -m, m)
    return q * scale


#: Attributes a compressed model's integer layers carry so that runtimes can rebuild the codes.
_SCALE_BUFFER = "weight_scale"
_BITS_ATTR = "weight_bits"


def mark_quantized(layer: torch.nn.Module, code: QuantizedWeight) -> None:
    """Record ``code``'s scales on ``layer`` (not saved in the state dict: the artifact has them).

    The layer's weight must already be ``code.dequantize()``; :func:`weight_codes` gives the
    integer codes back exactly, which the int8 runtimes and ONNX export use.
    """
    layer.register_buffer(_SCALE_BUFFER, code.scale.float().clone(), persistent=False)
    setattr(layer, _BITS_ATTR, code.bits)


def weight_codes(layer: torch.nn.Module) -> QuantizedWeight | None:
    """The integer codes of a layer marked by :func:`mark_quantized` (``None`` for float ones)."""
    scale = getattr(layer, _SCALE_BUFFER, None)
    bits = getattr(layer, _BITS_ATTR, None)
    weight = getattr(layer, "weight", None)
    if not isinstance(scale, torch.Tensor) or not isinstance(bits, int):
        return None
    if not isinstance(weight, torch.Tensor):
        return None
    w = weight.detach().float()
    m = qmax(bits)
    q = torch.clamp(torch.round(w / _broadcast(scale, w)), -m, m).to(torch.int8)
    return QuantizedWeight(q=q, scale=scale.half(), bits=bits)
