"""`CompressionConfig`: one candidate, as data.

A config names the student architecture and, per layer (keyed by fully-qualified layer name),
the structured (channel) pruning ratio, the unstructured pruning ratio and the weight bit
width, per attention block the fraction of its heads removed, plus the activation bit width,
the weight-scale granularity and the rounding of the whole model. It is frozen, versioned and
round-trips through JSON so that a saved study or artifact stays loadable (version-1 configs,
which predate channels and activations, still load; stored forms without ``rounding`` read as
``"nearest"``, without ``act_mode`` as ``"static"`` and without ``heads`` as no head removed,
what they were built with).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

CONFIG_VERSION = 2
#: Versions :meth:`CompressionConfig.from_dict` reads (older ones are upgraded on load).
READABLE_VERSIONS = (1, 2)

#: Weight bit widths a layer may take. 32 keeps float32 weights; 16 stores them as float16.
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
FLOAT_BITS = 32
TEACHER = "teacher"
#: Activation bit widths: 8 quantizes the inputs and outputs of every integer layer, 32 keeps
#: float activations.
ALLOWED_ACT_BITS = (8, 32)
#: Group-wise weight scales: the granularity's name and its group size ``G`` (one scale per run
#: of ``G`` consecutive weights of an output row, the row flattened in PyTorch's order).
GROUP_SIZES: Mapping[str, int] = MappingProxyType({"g128": 128, "g64": 64, "g32": 32})
#: Weight scales: one per output channel, one per layer, or one per group of a row.
GRANULARITIES = ("channel", "tensor", *GROUP_SIZES)
#: Weight rounding: each weight to its nearest code, or GPTQ's error-compensating rounding
#: (post-training, calibrated on training rows; see :mod:`spaces.post_training`): sequential
#: (``"gptq"``: each layer's inputs pass through the layers rounded before it) or from one
#: calibration pass of the float candidate (``"gptq-onepass"``: every layer at once).
ROUNDINGS = ("nearest", "gptq", "gptq-onepass")
#: The roundings done by :func:`spaces.post_training.gptq_round`.
GPTQ_ROUNDINGS = ("gptq", "gptq-onepass")
DEFAULT_ROUNDING = "nearest"
#: How 8-bit activations get their ranges: calibrated once on training rows (``"static"``,
#: see :mod:`spaces.activations`) or computed from each input tensor at every pass
#: (``"dynamic"``, ONNX Runtime's ``DynamicQuantizeLinear``; see :mod:`spaces.dynamic_acts`).
ACT_MODES = ("static", "dynamic")
DEFAULT_ACT_MODE = "static"


def preferred_act_mode(modes: tuple[str, ...]) -> str:
    """The mode a fixed choice takes among ``modes``: ``"static"`` when offered (it covers
    convolutions too), else the first."""
    return DEFAULT_ACT_MODE if DEFAULT_ACT_MODE in modes else modes[0]


#: Dynamic activations (codes 0-255) only go with weights of at most this many bits (codes
#: within +-63): a uint8 x int8 pair sum then stays below 2^15 (255 * 63 * 2 = 32130), so
#: the int16 ``vpmaddubsw`` of CPUs without VNNI never saturates.
DYNAMIC_MAX_WEIGHT_BITS = 7
#: Widest weights the static int8 kernels run exactly: 8 (with activation codes 0-127, or 0-255
#: on CPUs with VNNI; see :meth:`CompressionConfig.act_codes_of`).
STATIC_MAX_WEIGHT_BITS = 8
#: The largest code of static 8-bit activations: 127 (7 of the 8 bits: exact on every x86 CPU)
#: or 255 (the full range, around layers whose weights have at most
#: :data:`DYNAMIC_MAX_WEIGHT_BITS` bits; see :meth:`CompressionConfig.act_codes_of`).
ACT_CODES = (127, 255)
DEFAULT_ACT_CODES = 127
#: The CPUs the int8 kernels must compute exactly on: ``"x86"`` (every x86 CPU, AVX2 included)
#: or ``"vnni"`` (CPUs with VNNI, where codes 0-255 around 8-bit weights are exact too).
INT8_TARGETS = ("x86", "vnni")
DEFAULT_INT8_TARGET = "x86"


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted((mapping or {}).items())))


@dataclass(frozen=True)
class CompressionConfig:
    """One compression candidate.

    Attributes:
        student: ``"teacher"`` or the name of one of the task's student architectures.
        bits: Weight bit width per layer; a layer not listed keeps float32 weights (32 is
            the default and is left out of the stored form).
        prune: Fraction of each layer's weights set to zero by magnitude; not listed means 0
            (also left out).
        channels: Fraction of the output channels (convolutions) or neurons (linear layers)
            removed from each coupled group, keyed by the group's first layer (see
            :mod:`spaces.structured`); not listed means 0.
        heads: Fraction of the attention heads removed from each attention block, keyed by
            the block's name (see :mod:`spaces.heads`); not listed means 0. Left out of the
            stored form when empty, so configs saved before it existed keep their exact JSON.
        act_bits: 8 quantizes the activations around every layer whose weights have 8 bits or
            fewer (ranges calibrated on training data); 32 keeps them float.
        granularity: ``"channel"`` (one weight scale per output channel), ``"tensor"`` (one
            per layer) or ``"g128"`` / ``"g64"`` / ``"g32"`` (one per group of 128 / 64 / 32
            consecutive weights of each output row; see :mod:`spaces.quantization`).
        rounding: ``"nearest"`` (every weight to its nearest code), ``"gptq"`` (the integer
            linear layers and groups=1 convolutions are rounded by GPTQ after pruning, before
            any fine-tuning, layer after layer; see :mod:`spaces.post_training`) or
            ``"gptq-onepass"`` (the same, every layer's Hessian from one calibration pass of
            the float candidate). Left out of the stored form
            when ``"nearest"``, so configs saved before it existed keep their exact JSON.
        act_mode: With ``act_bits = 8``: ``"static"`` (calibrated ranges, inputs and outputs
            of every integer layer) or ``"dynamic"`` (each input tensor quantized with its
            own range at every pass, outputs float, only ``nn.Linear`` layers whose weights
            have at most 7 bits and one scale per row or layer; see
            :mod:`spaces.dynamic_acts`). Always ``"static"`` with float activations; left out
            of the stored form when ``"static"``.
        act_codes: With static 8-bit activations: the largest activation code, 127 or 255
            (the full uint8 range around the layers whose weights have at most 7 bits; layers
            with 8-bit weights keep 127: see :meth:`act_codes_of`). Always 127 otherwise;
            left out of the stored form when 127.
        int8_target: ``"x86"`` or ``"vnni"``: with ``"vnni"``, ``act_codes = 255`` applies
            around 8-bit weights too, which only CPUs with VNNI (``vpdpbusd``) compute exactly
            (see :meth:`act_codes_of`). Always ``"x86"`` unless the codes are 255; left out of
            the stored form when ``"x86"``.
        version: Format version, for loading configs saved by older releases.
    """

    student: str = TEACHER
    bits: Mapping[str, int] = field(default_factory=dict)
    prune: Mapping[str, float] = field(default_factory=dict)
    channels: Mapping[str, float] = field(default_factory=dict)
    heads: Mapping[str, float] = field(default_factory=dict)
    act_bits: int = FLOAT_BITS
    granularity: str = "channel"
    rounding: str = DEFAULT_ROUNDING
    act_mode: str = DEFAULT_ACT_MODE
    act_codes: int = DEFAULT_ACT_CODES
    int8_target: str = DEFAULT_INT8_TARGET
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.student, str) or not self.student:
            raise ValueError(f"'student' must be a non-empty string. Got {self.student!r} instead.")
        if self.version != CONFIG_VERSION:
            raise ValueError(
                f"CompressionConfig version {self.version} is not supported by this release "
                f"(it reads version {CONFIG_VERSION})."
            )
        for layer, b in dict(self.bits).items():
            if isinstance(b, bool) or not isinstance(b, int) or b not in ALLOWED_BITS:
                raise ValueError(
                    f"The bit width of layer {layer!r} must be one of {list(ALLOWED_BITS)}. "
                    f"Got {b!r} instead."
                )
        for what, ratios in (
            ("pruning", self.prune),
            ("channel pruning", self.channels),
            ("head pruning", self.heads),
        ):
            for layer, r in dict(ratios).items():
                if (
                    isinstance(r, bool)
                    or not isinstance(r, (int, float))
                    or not math.isfinite(r)
                    or not 0.0 <= r < 1.0
                ):
                    raise ValueError(
                        f"The {what} ratio of layer {layer!r} must be a float in the range "
                        f"[0, 1). Got {r!r} instead."
                    )
        if isinstance(self.act_bits, bool) or self.act_bits not in ALLOWED_ACT_BITS:
            raise ValueError(
                f"'act_bits' must be one of {list(ALLOWED_ACT_BITS)}. Got {self.act_bits!r} "
                "instead."
            )
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"'granularity' must be one of {list(GRANULARITIES)}. Got {self.granularity!r} "
                "instead."
            )
        if self.rounding not in ROUNDINGS:
            raise ValueError(
                f"'rounding' must be one of {list(ROUNDINGS)}. Got {self.rounding!r} instead."
            )
        if self.act_mode not in ACT_MODES:
            raise ValueError(
                f"'act_mode' must be one of {list(ACT_MODES)}. Got {self.act_mode!r} instead."
            )
        if isinstance(self.act_codes, bool) or self.act_codes not in ACT_CODES:
            raise ValueError(
                f"'act_codes' must be one of {list(ACT_CODES)}. Got {self.act_codes!r} instead."
            )
        if self.act_bits == FLOAT_BITS:  # float activations have no mode: one canonical form
            object.__setattr__(self, "act_mode", DEFAULT_ACT_MODE)
        if self.act_bits == FLOAT_BITS or self.act_mode != "static":  # codes of static ranges
            object.__setattr__(self, "act_codes", DEFAULT_ACT_CODES)
        object.__setattr__(self, "act_codes", int(self.act_codes))
        if self.int8_target not in INT8_TARGETS:
            raise ValueError(
                f"'int8_target' must be one of {list(INT8_TARGETS)}. "
                f"Got {self.int8_target!r} instead."
            )
        if self.act_codes == DEFAULT_ACT_CODES:  # the target only changes codes 0-255
            object.__setattr__(self, "int8_target", DEFAULT_INT8_TARGET)
        # canonical form: defaults are left out, so equal candidates compare equal
        bits = {k: int(v) for k, v in self.bits.items() if v != FLOAT_BITS}
        prune = {k: float(v) for k, v in self.prune.items() if v != 0}
        channels = {k: float(v) for k, v in self.channels.items() if v != 0}
        object.__setattr__(self, "bits", _frozen(bits))
        object.__setattr__(self, "prune", _frozen(prune))
        heads = {k: float(v) for k, v in self.heads.items() if v != 0}
        object.__setattr__(self, "channels", _frozen(channels))
        object.__setattr__(self, "heads", _frozen(heads))
        object.__setattr__(self, "act_bits", int(self.act_bits))

    def bits_of(self, layer: str) -> int:
        """The weight bit width of ``layer`` (32 when not listed)."""
        return int(self.bits.get(layer, FLOAT_BITS))

    def prune_of(self, layer: str) -> float:
        """The pruning ratio of ``layer`` (0 when not listed)."""
        return float(self.prune.get(layer, 0.0))

    def channels_of(self, layer: str) -> float:
        """The channel-pruning ratio of the group led by ``layer`` (0 when not listed)."""
        return float(self.channels.get(layer, 0.0))

    def heads_of(self, block: str) -> float:
        """The fraction of attention block ``block``'s heads removed (0 when not listed)."""
        return float(self.heads.get(block, 0.0))

    def act_bits_of(self, layer: str) -> int:
        """Activation bits around ``layer``: 8 only where its weights are integers (of at most
        :data:`DYNAMIC_MAX_WEIGHT_BITS` bits with dynamic activations)."""
        widest = DYNAMIC_MAX_WEIGHT_BITS if self.act_mode == "dynamic" else 8
        return self.act_bits if self.bits_of(layer) <= widest else FLOAT_BITS

    def act_codes_of(self, layer: str) -> int:
        """The largest activation code around ``layer``: :attr:`act_codes` where its weights
        have at most :data:`DYNAMIC_MAX_WEIGHT_BITS` bits, else 127.

        x86 CPUs without VNNI (AVX2) multiply uint8 codes by int8 weights with ``vpmaddubsw``,
        which saturates an int16 sum of two products. Codes up to 255 times weights within
        +-63 (7 bits) never reach it (255 * 63 * 2 = 32130), nor do codes up to 127 times
        8-bit weights (127 * 127 * 2 = 32258): either way the int8 kernels compute what was
        scored, on every CPU. 255 with 8-bit weights does not: measured on an AVX2 machine,
        EfficientNet-Lite0's uniform w8a8 scored 0.984 confident agreement simulated, 0.972 in
        ONNX Runtime without graph optimisation and 0.811 on its int8 kernels.

        CPUs with VNNI (``vpdpbusd``, AVX-512 VNNI or AVX-VNNI) sum uint8 x int8 products in
        int32 and never saturate: with ``int8_target = "vnni"`` the codes reach 255 around
        8-bit weights too (measured on a VNNI Xeon: EfficientNet-Lite0's uniform w8a8, nearest
        rounding, 0.956 confident agreement with codes 0-127, 0.980 with 0-255).
        """
        vnni = self.int8_target == "vnni"
        widest = STATIC_MAX_WEIGHT_BITS if vnni else DYNAMIC_MAX_WEIGHT_BITS
        if self.bits_of(layer) > widest:
            return DEFAULT_ACT_CODES
        return self.act_codes

    def is_identity(self) -> bool:
        """True when the config leaves the teacher exactly as it is.

        Activation bits only apply to integer layers, so without any they change nothing.
        """
        return (
            self.student == TEACHER
            and not self.bits
            and not self.prune
            and not self.channels
            and not self.heads
        )

    def restricted_to(self, layers: set[str] | list[str]) -> CompressionConfig:
        """The same config keeping only settings of ``layers`` (those a student has).

        An attention block's setting is kept when one of ``layers`` lies inside the block.
        """
        keep = set(layers)
        return CompressionConfig(
            student=self.student,
            bits={k: v for k, v in self.bits.items() if k in keep},
            prune={k: v for k, v in self.prune.items() if k in keep},
            channels={k: v for k, v in self.channels.items() if k in keep},
            heads={
                k: v
                for k, v in self.heads.items()
                if any(layer.startswith(k + ".") for layer in keep)
            },
            act_bits=self.act_bits,
            granularity=self.granularity,
            rounding=self.rounding,
            act_mode=self.act_mode,
            act_codes=self.act_codes,
            int8_target=self.int8_target,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form; ``heads`` only when some are removed, ``rounding`` only when not
        ``"nearest"``, ``act_mode`` only when ``"dynamic"``, ``act_codes`` only when 255 and
        ``int8_target`` only when ``"vnni"`` (older forms stay equal)."""
        data: dict[str, Any] = {
            "version": self.version,
            "student": self.student,
            "bits": dict(self.bits),
            "prune": dict(self.prune),
            "channels": dict(self.channels),
            "act_bits": self.act_bits,
            "granularity": self.granularity,
        }
        if self.heads:
            data["heads"] = dict(self.heads)
        if self.rounding != DEFAULT_ROUNDING:
            data["rounding"] = self.rounding
        if self.act_mode != DEFAULT_ACT_MODE:
            data["act_mode"] = self.act_mode
        if self.act_codes != DEFAULT_ACT_CODES:
            data["act_codes"] = self.act_codes
        if self.int8_target != DEFAULT_INT8_TARGET:
            data["int8_target"] = self.int8_target
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionConfig:
        """Read a stored config; version 1 (no channels, float activations) is upgraded."""
        version = data.get("version", CONFIG_VERSION)
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"CompressionConfig version {version!r} is not supported by this release "
                f"(it reads versions {list(READABLE_VERSIONS)})."
            )
        allowed = {"version", "student", "bits", "prune"}
        if version >= 2:
            allowed |= {"channels", "heads", "act_bits", "granularity", "rounding"}
            allowed |= {"act_mode", "act_codes", "int8_target"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"Unknown CompressionConfig key(s) {sorted(unknown)}; allowed: {sorted(allowed)}."
            )
        return cls(
            student=data.get("student", TEACHER),
            bits=dict(data.get("bits", {})),
            prune=dict(data.get("prune", {})),
            channels=dict(data.get("channels", {})),
            heads=dict(data.get("heads", {})),
            act_bits=data.get("act_bits", FLOAT_BITS),
            granularity=data.get("granularity", "channel"),
            rounding=data.get("rounding", DEFAULT_ROUNDING),
            act_mode=data.get("act_mode", DEFAULT_ACT_MODE),
            act_codes=data.get("act_codes", DEFAULT_ACT_CODES),
            int8_target=data.get("int8_target", DEFAULT_INT8_TARGET),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CompressionConfig:
        return cls.from_dict(json.loads(text))
