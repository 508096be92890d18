"""Unstructured magnitude pruning: the smallest weights of a layer become zero, permanently."""

from __future__ import annotations

import torch


def pruned_count(numel: int, ratio: float) -> int:
    """How many of ``numel`` weights a ``ratio`` prunes (rounded to the nearest integer)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"The pruning ratio must be in the range [0, 1). Got {ratio} instead.")
    return min(numel, round(ratio * numel))


def magnitude_mask(w: torch.Tensor, ratio: float) -> torch.Tensor:
    """A 0/1 float mask with exactly ``pruned_count(w.numel(), ratio)`` zeros.

    The zeros sit on the smallest-magnitude weights; ties are broken by position (a stable
    sort), so the mask is deterministic and the count is exact even with repeated values.
    """
    k = pruned_count(w.numel(), ratio)
    mask = torch.ones(w.numel(), dtype=torch.float32, device=w.device)
    if k > 0:
        order = torch.argsort(w.detach().abs().flatten(), stable=True)
        mask[order[:k]] = 0.0
    return mask.reshape(w.shape)
