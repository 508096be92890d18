"""What can change about a model: the search space and one ``apply`` per compression kind."""

from __future__ import annotations

from spaces._config import ALLOWED_BITS, CONFIG_VERSION, TEACHER, CompressionConfig
from spaces._layers import compressible_layers
from spaces._space import SearchSpace, SpaceSettings
from spaces.artifacts import LoadedCandidate, export_onnx, load_candidate, save_candidate
from spaces.compress import Compressed, FinetuneSettings, compress
from spaces.distillation import DistillationSettings, StudentPool
from spaces.packing import Artifact, pack, unpack
from spaces.pruning import magnitude_mask
from spaces.quantization import QuantizedWeight, fake_quantize, quantize_weight
from spaces.structured import prunable_groups, prune_channels

__all__ = [
    "ALLOWED_BITS",
    "CONFIG_VERSION",
    "TEACHER",
    "Artifact",
    "Compressed",
    "CompressionConfig",
    "DistillationSettings",
    "FinetuneSettings",
    "LoadedCandidate",
    "QuantizedWeight",
    "SearchSpace",
    "SpaceSettings",
    "StudentPool",
    "compress",
    "compressible_layers",
    "export_onnx",
    "fake_quantize",
    "load_candidate",
    "magnitude_mask",
    "pack",
    "prunable_groups",
    "prune_channels",
    "quantize_weight",
    "save_candidate",
    "unpack",
]
