"""Weight quantization: symmetric integer codes with float16 scales, round to nearest, clamp.

A ``b``-bit layer stores integers in ``[-(2**(b-1) - 1), 2**(b-1) - 1]`` (the symmetric
"restricted" range, so that zero is exact and a pruned weight stays pruned) and float16
scales, at one of these granularities:

- ``"channel"``: one scale per output channel (row ``i`` of the weight, dim 0);
- ``"tensor"``: one scale for the whole layer;
- ``"g128"`` / ``"g64"`` / ``"g32"``: group-wise. The weight of shape ``(out, ...)`` is
  flattened to ``(out, K)`` (a convolution's ``K = in * kh * kw`` in PyTorch's order) and each
  row is cut into groups of ``G`` consecutive weights, one scale per ``(row, group)``: scales
  of shape ``(out, ceil(K / G))``. When ``G`` does not divide ``K`` the last group of each
  row is shorter (``K mod G`` weights). A 1-D weight counts as a single row.

Scales. Channel and per-tensor scales are absmax (``max |w| / qmax``) at every width, so
configurations saved before group-wise scales existed rebuild the same artifacts (and the
cached sensitivities keyed by granularity stay valid). Group-wise scales below 8 bits are
chosen by an MSE clipping search: each group tries ``CLIP_RATIOS`` of its absmax and keeps
the scale whose dequantized group has the least squared error (ratio 1 first, so a tie keeps
absmax and the error is never above absmax's); at 8 bits they stay absmax. The model that is
evaluated uses exactly ``q * scale`` with the float16 scale, so the evaluated model and the
packed artifact hold the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spaces.config import GRANULARITIES, GROUP_SIZES

# float16 scales: the smallest normal float16 keeps scales away from zero and subnormals.
_MIN_SCALE = 2.0**-14
_MAX_SCALE = 65504.0
#: Fractions of a group's absmax the MSE clipping search tries, absmax first.
CLIP_RATIOS = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))


def qmax(bits: int) -> int:
    """Largest integer magnitude of a ``bits``-bit symmetric code."""
    if not 2 <= bits <= 8:
        raise ValueError(f"Integer quantization takes 2 to 8 bits. Got {bits} instead.")
    return 2 ** (bits - 1) - 1


def group_size(granularity: str) -> int | None:
    """``G`` of a group-wise granularity, ``None`` for ``"channel"`` and ``"tensor"``."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"'granularity' must be one of {list(GRANULARITIES)}. Got {granularity!r} instead."
        )
    return GROUP_SIZES.get(granularity)


def _rows(shape: Sequence[int]) -> tuple[int, int]:
    """``(out, K)``: a weight flattened to one row per output channel (1-D: a single row)."""
    numel = math.prod(shape)
    out = int(shape[0]) if len(shape) > 1 else 1
    return out, numel // out if out else 0


def scale_count(shape: Sequence[int], granularity: str) -> int:
    """How many float16 scales a weight of ``shape`` has at ``granularity``."""
    g = group_size(granularity)
    if g is not None:
        out, k = _rows(shape)
        return out * math.ceil(k / g)
    return int(shape[0]) if granularity == "channel" and len(shape) > 1 else 1


def uses_mse_clipping(bits: int, granularity: str) -> bool:
    """The scale rule: MSE clipping for group-wise scales below 8 bits, absmax otherwise."""
    return bits < 8 and group_size(granularity) is not None


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer codes and their scales; ``dequantize()`` gives the float weight.

    ``scale`` has one element (per tensor), one per output channel (``group_size`` is
    ``None``), or shape ``(out, n_groups)`` for group-wise codes of ``group_size`` weights.
    """

    q: torch.Tensor  # int8 codes, same shape as the weight
    scale: torch.Tensor  # float16
    bits: int
    group_size: int | None = None

    def dequantize(self) -> torch.Tensor:
        return self.q.float() * expand_scale(self.scale.float(), self.q.shape, self.group_size)


def expand_scale(
    scale: torch.Tensor, shape: Sequence[int] | torch.Size, group: int | None
) -> torch.Tensor:
    """``scale`` broadcastable against a weight of ``shape`` (every weight's own scale)."""
    if group is not None:
        out, k = _rows(shape)
        return scale.reshape(out, -1).repeat_interleave(group, dim=1)[:, :k].reshape(shape)
    if scale.numel() > 1:
        return scale.reshape(-1, *([1] * (len(shape) - 1)))
    return scale


def _blocks(w: torch.Tensor, granularity: str) -> torch.Tensor:
    """``w`` as one row per scale (group rows padded with zeros, which change no absmax/error)."""
    g = group_size(granularity)
    if g is None:
        if granularity == "channel" and w.dim() > 1:
            return w.reshape(w.shape[0], -1)
        return w.reshape(1, -1)
    out, k = _rows(w.shape)
    padded = torch.nn.functional.pad(w.reshape(out, k), (0, math.ceil(k / g) * g - k))
    return padded.reshape(-1, g)


def _to_fp16(scale: torch.Tensor) -> torch.Tensor:
    return scale.clamp(_MIN_SCALE, _MAX_SCALE).half().float()


def _mse_scales(blocks: torch.Tensor, amax: torch.Tensor, bits: int) -> torch.Tensor:
    """Per row of ``blocks``, the clipped float16 scale with the least squared error.

    Errors are those of the float16 scales actually stored, so the first ratio (1: absmax)
    bounds the result's error from above; a strict ``<`` keeps the larger ratio on a tie.
    """
    m = qmax(bits)
    best = _to_fp16(amax / m)
    best_err = torch.full_like(best, math.inf)
    for ratio in CLIP_RATIOS:  # one pass per ratio: memory stays one weight's size
        scale = _to_fp16(amax * ratio / m)
        q = torch.clamp(torch.round(blocks / scale[:, None]), -m, m)
        err = (q * scale[:, None] - blocks).pow(2).sum(dim=1)
        better = err < best_err
        best = torch.where(better, scale, best)
        best_err = torch.where(better, err, best_err)
    return best


def compute_scale(
    w: torch.Tensor, bits: int, *, granularity: str = "channel", mse: bool | None = None
) -> torch.Tensor:
    """Float16 scales (held in a float32 tensor) of ``w``, shaped as ``QuantizedWeight.scale``.

    ``mse`` forces the MSE clipping search on or off; ``None`` follows
    :func:`uses_mse_clipping`.
    """
    blocks = _blocks(w.detach().float(), granularity)
    search = uses_mse_clipping(bits, granularity) if mse is None else mse
    amax = blocks.abs().amax(dim=1)
    scale = _mse_scales(blocks, amax, bits) if search else _to_fp16(amax / qmax(bits))
    if group_size(granularity) is not None:
        return scale.reshape(_rows(w.shape)[0], -1)
    return scale


def _codes(w: torch.Tensor, scale: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    m = qmax(bits)
    return torch.clamp(torch.round(w / expand_scale(scale, w.shape, group)), -m, m)


def quantize_weight(
    w: torch.Tensor, bits: int, *, granularity: str = "channel", mse: bool | None = None
) -> QuantizedWeight:
    """Quantize ``w`` to ``bits``-bit integer codes with float16 scales at ``granularity``."""
    scale = compute_scale(w, bits, granularity=granularity, mse=mse)
    group = group_size(granularity)
    q = _codes(w.detach().float(), scale, bits, group)
    return QuantizedWeight(q=q.to(torch.int8), scale=scale.half(), bits=bits, group_size=group)


class _RoundSTE(torch.autograd.Function):
    """Round and clamp to ``[-m, m]`` in the forward pass, identity gradient in the backward.

    The clamp is inside the estimator so that values an MSE-clipped scale clamps still get
    their gradient (absmax scales clamp nothing).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, m: int) -> torch.Tensor:
        return torch.clamp(torch.round(x), -m, m)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        return grad, None


class _Fp16STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.half().float()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def fake_quantize(w: torch.Tensor, bits: int, *, granularity: str = "channel") -> torch.Tensor:
    """Differentiable ``dequantize(quantize(w))`` using a straight-through estimator.

    The forward value equals ``quantize_weight(w, bits, granularity=...).dequantize()``
    (scales chosen by the same rule, MSE clipping included); gradients pass through the
    rounding unchanged (clamped values get the gradient too, as in LSQ-free QAT) and not
    through the choice of scale.
    """
    if bits >= 32:
        return w
    if bits == 16:
        out: torch.Tensor = _Fp16STE.apply(w)
        return out
    scale = compute_scale(w, bits, granularity=granularity)
    scale = expand_scale(scale, w.shape, group_size(granularity))
    q = _RoundSTE.apply(w / scale, qmax(bits))
    return q * scale


#: Attributes a compressed model's integer layers carry so that runtimes can rebuild the codes.
_SCALE_BUFFER = "weight_scale"
_BITS_ATTR = "weight_bits"
_GROUP_ATTR = "weight_group_size"


def mark_quantized(layer: torch.nn.Module, code: QuantizedWeight) -> None:
    """Record ``code``'s scales on ``layer`` (not saved in the state dict: the artifact has them).

    The layer's weight must already be ``code.dequantize()``; :func:`weight_codes` gives the
    integer codes back exactly, which the int8 runtimes and ONNX export use.
    """
    layer.register_buffer(_SCALE_BUFFER, code.scale.float().clone(), persistent=False)
    setattr(layer, _BITS_ATTR, code.bits)
    setattr(layer, _GROUP_ATTR, code.group_size)


def weight_codes(layer: torch.nn.Module) -> QuantizedWeight | None:
    """The integer codes of a layer marked by :func:`mark_quantized` (``None`` for float ones).

    The codes are rebuilt exactly from the (dequantized) weight and the recorded scales.
    """
    scale = getattr(layer, _SCALE_BUFFER, None)
    bits = getattr(layer, _BITS_ATTR, None)
    group = getattr(layer, _GROUP_ATTR, None)
    weight = getattr(layer, "weight", None)
    if not isinstance(scale, torch.Tensor) or not isinstance(bits, int):
        return None
    if not isinstance(weight, torch.Tensor):
        return None
    q = _codes(weight.detach().float(), scale, bits, group).to(torch.int8)
    return QuantizedWeight(q=q, scale=scale.half(), bits=bits, group_size=group)
