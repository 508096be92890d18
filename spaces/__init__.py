"""What can change about a model: the search space and one ``apply`` per compression kind."""

from __future__ import annotations

from spaces._config import ALLOWED_BITS, CONFIG_VERSION, TEACHER, CompressionConfig
from spaces._layers import compressible_layers
from spaces._space import SearchSpace, SpaceSettings
from spaces.compress import Compressed, FinetuneSettings, compress
from spaces.distillation import DistillationSettings, StudentPool
from spaces.packing import Artifact, pack, unpack
from spaces.pruning import magnitude_mask
from spaces.quantization import QuantizedWeight, fake_quantize, quantize_weight

__all__ = [
    "ALLOWED_BITS",
    "CONFIG_VERSION",
    "TEACHER",
    "Artifact",
    "Compressed",
    "CompressionConfig",
    "DistillationSettings",
    "FinetuneSettings",
    "QuantizedWeight",
    "SearchSpace",
    "SpaceSettings",
    "StudentPool",
    "compress",
    "compressible_layers",
    "fake_quantize",
    "magnitude_mask",
    "pack",
    "quantize_weight",
    "unpack",
]
