"""The search space: dimensions, and their translation to and from a `CompressionConfig`.

The space is static: every trial has the same parameters (``student``, ``bits.<layer>``,
``prune.<layer>`` and ``channels.<group root>`` for every layer of the teacher, the deepest
model, ``heads.<attention block>`` for every attention block, plus ``act_bits``,
``act_mode``, ``granularity`` and ``rounding`` when the study offers more than one choice).
Optuna's multivariate TPE and NSGA-II fall back to independent random sampling for parameters
that appear only in some trials, so a parameter that the chosen student does not use is
sampled and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from spaces._checks import check_bits, check_choices, check_one, check_prune_max
from spaces.activations import ACT_CALIBRATIONS
from spaces.config import (
    ACT_CODES,
    ACT_MODES,
    ALLOWED_ACT_BITS,
    DEFAULT_INT8_TARGET,
    FLOAT_BITS,
    GRANULARITIES,
    INT8_TARGETS,
    ROUNDINGS,
    TEACHER,
    CompressionConfig,
    preferred_act_mode,
)
from spaces.structured import IMPORTANCES

DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 32)


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
        channels_max: Largest fraction of a coupled group's channels removed (structured
            pruning); 0 leaves structured pruning out of the space.
        channels_step: Granularity of channel-pruning ratios.
        channel_importance: Which channels go first: ``"l1"`` or ``"l2"`` magnitude.
        layer_channels_max: Per-group ``channels_max``, keyed by the group's root layer.
        heads_max: Largest fraction of an attention block's heads removed (see
            :mod:`spaces.heads`); 0 leaves head pruning out of the space.
        heads_step: Granularity of head-pruning ratios.
        layer_heads_max: Per-block ``heads_max``, keyed by the attention block's name.
        act_bits: Activation bit widths to search (8 and/or 32).
        act_mode: How 8-bit activations are quantized, to search: ``"static"`` (calibrated
            ranges) and/or ``"dynamic"`` (each input's own range, ONNX Runtime's
            ``DynamicQuantizeLinear``; see :mod:`spaces.dynamic_acts`).
        act_calibration: How static 8-bit activation ranges are chosen on training rows, for
            every candidate (not searched): ``"minmax"`` (the range seen) or ``"mse"`` (the
            range shrunk to the least squared quantization error; see
            :func:`spaces.activations.mse_range`).
        act_codes: Largest codes of static 8-bit activations to search: 127 (7 of the 8
            bits) and/or 255 (the full range around layers whose weights have at most 7
            bits; see :meth:`spaces.CompressionConfig.act_codes_of`).
        int8_target: ``"x86"`` (default) or ``"vnni"``: codes 0-255 around 8-bit weights
            too, exact only on CPUs with VNNI (not searched; every candidate's).
        granularity: Weight-scale granularities to search (``"channel"``, ``"tensor"``).
        rounding: Weight roundings to search (``"nearest"``, ``"gptq"``, ``"gptq-onepass"``).
        custom_students: Extra student constructors, name -> ``"package.module:function"``
            (called without arguments, returning an untrained ``nn.Module`` whose layer names
            are teacher layer names).
    """

    bits: tuple[int, ...] = DEFAULT_BITS
    prune_max: float = 0.9
    prune_step: float = 0.05
    students: tuple[str, ...] | None = None
    layer_bits: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    layer_prune_max: Mapping[str, float] = field(default_factory=dict)
    channels_max: float = 0.0
    channels_step: float = 0.125
    channel_importance: str = "l2"
    layer_channels_max: Mapping[str, float] = field(default_factory=dict)
    heads_max: float = 0.0
    heads_step: float = 0.125
    layer_heads_max: Mapping[str, float] = field(default_factory=dict)
    act_bits: tuple[int, ...] = (FLOAT_BITS,)
    act_mode: tuple[str, ...] = ("static",)
    act_calibration: str = "minmax"
    act_codes: tuple[int, ...] = (127,)
    int8_target: str = DEFAULT_INT8_TARGET
    granularity: tuple[str, ...] = ("channel",)
    rounding: tuple[str, ...] = ("nearest",)
    custom_students: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits("space.bits", self.bits))
        check_prune_max("space.prune_max", self.prune_max)
        if not 0 < self.prune_step <= 0.5:
            raise ValueError(
                f"'space.prune_step' must be a float in the range (0, 0.5]. "
                f"Got {self.prune_step!r} instead."
            )
        lb = {k: check_bits(f"space.layers.{k}.bits", v) for k, v in self.layer_bits.items()}
        lp = {
            k: check_prune_max(f"space.layers.{k}.prune_max", v)
            for k, v in self.layer_prune_max.items()
        }
        object.__setattr__(self, "layer_bits", MappingProxyType(lb))
        object.__setattr__(self, "layer_prune_max", MappingProxyType(lp))
        for what in ("channels", "heads"):
            check_prune_max(f"space.{what}_max", getattr(self, f"{what}_max"))
            step = getattr(self, f"{what}_step")
            if not 0 < step <= 0.5:
                raise ValueError(
                    f"'space.{what}_step' must be a float in the range (0, 0.5]. "
                    f"Got {step!r} instead."
                )
            per_layer = {
                k: check_prune_max(f"space.layers.{k}.{what}_max", v)
                for k, v in getattr(self, f"layer_{what}_max").items()
            }
            object.__setattr__(self, f"layer_{what}_max", MappingProxyType(per_layer))
        check_one("space.channel_importance", self.channel_importance, sorted(IMPORTANCES))
        check_one("space.act_calibration", self.act_calibration, ACT_CALIBRATIONS)
        check_one("space.int8_target", self.int8_target, INT8_TARGETS)
        act = check_choices("space.act_bits", self.act_bits, ALLOWED_ACT_BITS)
        object.__setattr__(self, "act_bits", act)
        mode = check_choices("space.act_mode", self.act_mode, ACT_MODES)
        object.__setattr__(self, "act_mode", mode)
        codes = check_choices("space.act_codes", self.act_codes, ACT_CODES)
        object.__setattr__(self, "act_codes", codes)
        gran = check_choices("space.granularity", self.granularity, GRANULARITIES)
        object.__setattr__(self, "granularity", gran)
        rounding = check_choices("space.rounding", self.rounding, ROUNDINGS)
        object.__setattr__(self, "rounding", rounding)
        for name, target in self.custom_students.items():
            if not isinstance(target, str) or ":" not in target:
                raise ValueError(
                    f"'space.custom_students.{name}' must look like "
                    f'"package.module:function". Got {target!r} instead.'
                )
        object.__setattr__(self, "custom_students", MappingProxyType(dict(self.custom_students)))
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
        channel_roots: Roots of the teacher's prunable channel groups (see
            :func:`spaces.structured.prunable_groups`); none means no structured pruning.
        head_modules: The teacher's attention blocks (see :func:`spaces.heads.head_modules`);
            none means no head pruning.
    """

    def __init__(
        self,
        layers: Sequence[str],
        students: Sequence[str],
        settings: SpaceSettings,
        channel_roots: Sequence[str] = (),
        head_modules: Sequence[str] = (),
    ) -> None:
        named = set(settings.layer_bits) | set(settings.layer_prune_max)
        named |= set(settings.layer_channels_max)
        unknown = sorted(named - set(layers))
        if unknown:
            raise ValueError(
                f"Unknown layer name(s) {unknown} in 'space.layers'; the model's layers are "
                f"{list(layers)}."
            )
        unknown = sorted(set(settings.layer_heads_max) - set(head_modules))
        if unknown:
            raise ValueError(
                f"'space.layers.{unknown[0]}.heads_max' names no attention block; the model's "
                f"attention blocks are {list(head_modules)}."
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
        self.channel_roots = [r for r in layers if r in set(channel_roots)]
        self.head_modules = list(dict.fromkeys(head_modules))

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
        for root in self.channel_roots:
            high = s.layer_channels_max.get(root, s.channels_max)
            high = round(int(high / s.channels_step + 1e-9) * s.channels_step, 10)
            if high > 0:
                dists[f"channels.{root}"] = FloatDistribution(0.0, high, step=s.channels_step)
        for block in self.head_modules:
            high = s.layer_heads_max.get(block, s.heads_max)
            high = round(int(high / s.heads_step + 1e-9) * s.heads_step, 10)
            if high > 0:
                dists[f"heads.{block}"] = FloatDistribution(0.0, high, step=s.heads_step)
        # a single choice is a fixed setting, not a dimension
        if len(s.act_bits) > 1:
            dists["act_bits"] = CategoricalDistribution(list(s.act_bits))
        if len(s.act_mode) > 1 and 8 in s.act_bits:  # a mode of 8-bit activations only
            dists["act_mode"] = CategoricalDistribution(list(s.act_mode))
        if len(s.act_codes) > 1 and 8 in s.act_bits and "static" in s.act_mode:
            dists["act_codes"] = CategoricalDistribution(list(s.act_codes))
        if len(s.granularity) > 1:
            dists["granularity"] = CategoricalDistribution(list(s.granularity))
        if len(s.rounding) > 1:
            dists["rounding"] = CategoricalDistribution(list(s.rounding))
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
        s = self.settings
        return CompressionConfig(
            student=str(params.get("student", TEACHER)),
            bits={layer: int(params.get(f"bits.{layer}", FLOAT_BITS)) for layer in self.layers},
            prune={
                layer: round(float(params.get(f"prune.{layer}", 0.0)), 10) for layer in self.layers
            },
            channels={
                root: round(float(params.get(f"channels.{root}", 0.0)), 10)
                for root in self.channel_roots
            },
            heads={
                block: round(float(params.get(f"heads.{block}", 0.0)), 10)
                for block in self.head_modules
            },
            act_bits=int(params.get("act_bits", s.act_bits[0])),
            granularity=str(params.get("granularity", s.granularity[0])),
            rounding=str(params.get("rounding", s.rounding[0])),
            act_mode=str(params.get("act_mode", s.act_mode[0])),
            act_codes=int(params.get("act_codes", s.act_codes[0])),
            int8_target=s.int8_target,
        )

    def params_from_config(self, config: CompressionConfig) -> dict[str, Any]:
        """Parameters that reproduce ``config`` (for enqueuing), over the whole space."""
        params: dict[str, Any] = {"student": config.student}
        dists = self.distributions()
        for layer in self.layers:
            params[f"bits.{layer}"] = config.bits_of(layer)
            if f"prune.{layer}" in dists:
                params[f"prune.{layer}"] = config.prune_of(layer)
        for root in self.channel_roots:
            if f"channels.{root}" in dists:
                params[f"channels.{root}"] = config.channels_of(root)
        for block in self.head_modules:
            if f"heads.{block}" in dists:
                params[f"heads.{block}"] = config.heads_of(block)
        for key in ("act_bits", "act_mode", "act_codes", "granularity", "rounding"):
            if key in dists:
                params[key] = getattr(config, key)
        return params

    def contains(self, config: CompressionConfig) -> bool:
        """Whether every value of ``config`` is a choice of this space."""
        dists = self.distributions()
        if config.act_bits not in self.settings.act_bits:
            return False
        if config.granularity not in self.settings.granularity:
            return False
        if config.rounding not in self.settings.rounding:
            return False
        if config.act_bits == 8 and config.act_mode not in self.settings.act_mode:
            return False
        static = config.act_bits == 8 and config.act_mode == "static"
        if static and config.act_codes not in self.settings.act_codes:
            return False
        if config.int8_target not in (DEFAULT_INT8_TARGET, self.settings.int8_target):
            return False
        for name, value in self.params_from_config(config).items():
            dist = dists[name]
            if isinstance(dist, CategoricalDistribution):
                if value not in dist.choices:
                    return False
            elif isinstance(dist, FloatDistribution) and not dist.low <= value <= dist.high:
                return False
        return True

    def baselines(self) -> dict[str, CompressionConfig]:
        """The uncompressed teacher and uniform 8- and 4-bit teachers, by name.

        The integer baselines quantize activations to 8 bits too when the space offers it
        (a real int8 deployment), with per-channel scales and nearest rounding when offered,
        and static activation ranges when offered (else the first mode listed).
        """
        s = self.settings
        act = 8 if 8 in s.act_bits else s.act_bits[0]
        mode = preferred_act_mode(s.act_mode)
        gran = "channel" if "channel" in s.granularity else s.granularity[0]
        rounding = "nearest" if "nearest" in s.rounding else s.rounding[0]
        teacher = CompressionConfig(student=TEACHER, **self._plain_settings())
        uniform = {"uniform-int8": 8, "uniform-int4": 4}
        return {
            "teacher": teacher,
            **{
                name: CompressionConfig(
                    student=TEACHER,
                    bits=dict.fromkeys(self.layers, b),
                    act_bits=act,
                    granularity=gran,
                    rounding=rounding,
                    act_mode=mode,
                    act_codes=s.act_codes[0],
                    int8_target=s.int8_target,
                )
                for name, b in uniform.items()
            },
        }

    def student_baselines(self) -> dict[str, CompressionConfig]:
        """Each searched student, distilled and otherwise uncompressed (``"student:<name>"``).

        They show what distillation alone gives, and they seed the search with the fast,
        accurate architectures that the compression dimensions then refine.
        """
        return {
            f"student:{name}": CompressionConfig(student=name, **self._plain_settings())
            for name in self.students
            if name != TEACHER
        }

    def _plain_settings(self) -> dict[str, Any]:
        """The whole-model settings of an uncompressed baseline: float activations when
        offered, else the space's first choice of each."""
        s = self.settings
        return {
            "act_bits": FLOAT_BITS if FLOAT_BITS in s.act_bits else s.act_bits[0],
            "granularity": s.granularity[0],
            "rounding": s.rounding[0],
            "act_codes": s.act_codes[0],
            "int8_target": s.int8_target,
        }
