"""The search space: dimensions, and their translation to and from a `CompressionConfig`.

The space is static: every trial has the same parameters (``student``, ``bits.<layer>`` and
``prune.<layer>`` for every layer of the teacher, the deepest model). Optuna's multivariate
TPE and NSGA-II fall back to independent random sampling for parameters that appear only in
some trials, so a parameter that the chosen student does not use is sampled and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from spaces._config import ALLOWED_BITS, FLOAT_BITS, TEACHER, CompressionConfig

DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 32)


def _check_bits(where: str, bits: Sequence[int]) -> tuple[int, ...]:
    if not bits:
        raise ValueError(f"'{where}' must list at least one bit width.")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or b not in ALLOWED_BITS:
            raise ValueError(
                f"'{where}' must hold bit widths from {list(ALLOWED_BITS)} "
                f"(32 keeps float). Got {b!r} instead."
            )
    return tuple(sorted(set(bits)))


def _check_prune_max(where: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"'{where}' must be a float in the range [0, 1). Got {value!r} instead.")
    return float(value)


@dataclass(frozen=True)
class SpaceSettings:
    """What the search may choose.

    Attributes:
        bits: Weight bit widths every layer may take (32 keeps float32).
        prune_max: Largest unstructured pruning ratio of a layer.
        prune_step: Granularity of pruning ratios.
        students: Student names to search (``"teacher"`` included or not); ``None`` means the
            teacher and every student of the task.
        layer_bits: Per-layer bit choices replacing ``bits`` for that layer.
        layer_prune_max: Per-layer ``prune_max``.
    """

    bits: tuple[int, ...] = DEFAULT_BITS
    prune_max: float = 0.9
    prune_step: float = 0.05
    students: tuple[str, ...] | None = None
    layer_bits: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    layer_prune_max: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", _check_bits("space.bits", self.bits))
        _check_prune_max("space.prune_max", self.prune_max)
        if not 0 < self.prune_step <= 0.5:
            raise ValueError(
                f"'space.prune_step' must be a float in the range (0, 0.5]. "
                f"Got {self.prune_step!r} instead."
            )
        lb = {k: _check_bits(f"space.layers.{k}.bits", v) for k, v in self.layer_bits.items()}
        lp = {
            k: _check_prune_max(f"space.layers.{k}.prune_max", v)
            for k, v in self.layer_prune_max.items()
        }
        object.__setattr__(self, "layer_bits", MappingProxyType(lb))
        object.__setattr__(self, "layer_prune_max", MappingProxyType(lp))
        if self.students is not None:
            if not self.students:
                raise ValueError("'space.students' must name at least one model.")
            object.__setattr__(self, "students", tuple(self.students))


class SearchSpace:
    """The dimensions of one study, over the layers of its teacher.

    Args:
        layers: Compressible layer names of the teacher, in order.
        students: Names the ``student`` parameter may take (``"teacher"`` for none).
        settings: Choices per dimension.
    """

    def __init__(
        self, layers: Sequence[str], students: Sequence[str], settings: SpaceSettings
    ) -> None:
        unknown = sorted((set(settings.layer_bits) | set(settings.layer_prune_max)) - set(layers))
        if unknown:
            raise ValueError(
                f"Unknown layer name(s) {unknown} in 'space.layers'; the model's layers are "
                f"{list(layers)}."
            )
        chosen = list(settings.students) if settings.students is not None else list(students)
        bad = [s for s in chosen if s not in students]
        if bad:
            raise ValueError(
                f"Unknown student(s) {bad} in 'space.students'; choose from {list(students)}."
            )
        self.layers = list(layers)
        self.students = chosen
        self.settings = settings

    def bits_choices(self, layer: str) -> tuple[int, ...]:
        return self.settings.layer_bits.get(layer, self.settings.bits)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter of the space, as Optuna distributions, in a fixed order."""
        s = self.settings
        dists: dict[str, BaseDistribution] = {"student": CategoricalDistribution(self.students)}
        for layer in self.layers:
            dists[f"bits.{layer}"] = CategoricalDistribution(list(self.bits_choices(layer)))
        for layer in self.layers:
            high = s.layer_prune_max.get(layer, s.prune_max)
            high = round(int(high / s.prune_step + 1e-9) * s.prune_step, 10)
            if high > 0:
                dists[f"prune.{layer}"] = FloatDistribution(0.0, high, step=s.prune_step)
        return dists

    def suggest(self, trial: optuna.Trial) -> CompressionConfig:
        """Sample one configuration through Optuna's define-by-run API."""
        params: dict[str, Any] = {}
        for name, dist in self.distributions().items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, FloatDistribution):
                params[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        return self.config_from_params(params)

    def config_from_params(self, params: Mapping[str, Any]) -> CompressionConfig:
        """The configuration a set of parameters describes."""
        return CompressionConfig(
            student=str(params.get("student", TEACHER)),
            bits={layer: int(params.get(f"bits.{layer}", FLOAT_BITS)) for layer in self.layers},
            prune={
                layer: round(float(params.get(f"prune.{layer}", 0.0)), 10) for layer in self.layers
            },
        )

    def params_from_config(self, config: CompressionConfig) -> dict[str, Any]:
        """Parameters that reproduce ``config`` (for enqueuing), over the whole space."""
        params: dict[str, Any] = {"student": config.student}
        dists = self.distributions()
        for layer in self.layers:
            params[f"bits.{layer}"] = config.bits_of(layer)
            if f"prune.{layer}" in dists:
                params[f"prune.{layer}"] = config.prune_of(layer)
        return params

    def contains(self, config: CompressionConfig) -> bool:
        """Whether every value of ``config`` is a choice of this space."""
        dists = self.distributions()
        for name, value in self.params_from_config(config).items():
            dist = dists[name]
            if isinstance(dist, CategoricalDistribution):
                if value not in dist.choices:
                    return False
            elif isinstance(dist, FloatDistribution) and not dist.low <= value <= dist.high:
                return False
        return True

    def baselines(self) -> dict[str, CompressionConfig]:
        """The uncompressed teacher and uniform 8- and 4-bit teachers, by name."""
        uniform = {
            "teacher": FLOAT_BITS,
            "uniform-int8": 8,
            "uniform-int4": 4,
        }
        return {
            name: CompressionConfig(student=TEACHER, bits=dict.fromkeys(self.layers, b))
            for name, b in uniform.items()
        }
