"""What can change about a model, and what building a candidate needs.

The search space and one ``apply`` per compression kind; the task contract (`Task`, `Split`,
`Metric`), the training helpers (`fit`, `predict`) and the weight cache. This package imports
nothing from ``evaluators`` or ``search``.
"""

from __future__ import annotations

from spaces.artifacts import LoadedCandidate, export_onnx, load_candidate, save_candidate
from spaces.cache import WeightCache
from spaces.compress import Compressed, FinetuneSettings, compress
from spaces.config import ALLOWED_BITS, CONFIG_VERSION, TEACHER, CompressionConfig
from spaces.distillation import DistillationSettings, StudentPool
from spaces.layers import compressible_layers
from spaces.packing import Artifact, pack, unpack
from spaces.pruning import magnitude_mask
from spaces.quantization import QuantizedWeight, fake_quantize, quantize_weight
from spaces.sensitivity import (
    SensitivitySettings,
    SensitivityTable,
    cached_sensitivity,
    measure_sensitivity,
    restricted_space,
    study_forward_rows,
)
from spaces.space import SearchSpace, SpaceSettings
from spaces.structured import prunable_groups, prune_channels
from spaces.task import ACCURACY, Metric, Split, Task
from spaces.training import TrainingDiverged, fit, predict

__all__ = [
    "ACCURACY",
    "ALLOWED_BITS",
    "CONFIG_VERSION",
    "TEACHER",
    "Artifact",
    "Compressed",
    "CompressionConfig",
    "DistillationSettings",
    "FinetuneSettings",
    "LoadedCandidate",
    "Metric",
    "QuantizedWeight",
    "SearchSpace",
    "SensitivitySettings",
    "SensitivityTable",
    "SpaceSettings",
    "Split",
    "StudentPool",
    "Task",
    "TrainingDiverged",
    "WeightCache",
    "cached_sensitivity",
    "compress",
    "compressible_layers",
    "export_onnx",
    "fake_quantize",
    "fit",
    "load_candidate",
    "magnitude_mask",
    "measure_sensitivity",
    "pack",
    "predict",
    "prunable_groups",
    "prune_channels",
    "quantize_weight",
    "restricted_space",
    "save_candidate",
    "study_forward_rows",
    "unpack",
]
