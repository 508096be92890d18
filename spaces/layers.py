"""Which layers of a model the search can compress, by fully-qualified name."""

from __future__ import annotations

import torch
from torch import nn

#: Module types whose ``weight`` the search quantizes and prunes. Embedding tables count: in a
#: small transformer they hold half the weights (one scale per row, like a channel).
COMPRESSIBLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def compressible_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's compressible layers keyed by fully-qualified name, in definition order."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, COMPRESSIBLE_TYPES) and name
    }


def weight_of(layer: nn.Module) -> torch.Tensor:
    """The ``weight`` tensor of a compressible layer (typed, for mypy)."""
    weight = layer.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(layer).__name__} has no weight tensor.")
    return weight
