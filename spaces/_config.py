"""`CompressionConfig`: one candidate, as data.

A config names the student architecture and, per layer (keyed by fully-qualified layer name),
the weight bit width and the unstructured pruning ratio. It is frozen, versioned and
round-trips through JSON so that a saved study or artifact stays loadable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

CONFIG_VERSION = 1

#: Weight bit widths a layer may take. 32 keeps float32 weights; 16 stores them as float16.
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
FLOAT_BITS = 32
TEACHER = "teacher"


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
        version: Format version, for loading configs saved by older releases.
    """

    student: str = TEACHER
    bits: Mapping[str, int] = field(default_factory=dict)
    prune: Mapping[str, float] = field(default_factory=dict)
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
        for layer, r in dict(self.prune).items():
            if (
                isinstance(r, bool)
                or not isinstance(r, (int, float))
                or not math.isfinite(r)
                or not 0.0 <= r < 1.0
            ):
                raise ValueError(
                    f"The pruning ratio of layer {layer!r} must be a float in the range [0, 1). "
                    f"Got {r!r} instead."
                )
        # canonical form: defaults are left out, so equal candidates compare equal
        bits = {k: int(v) for k, v in self.bits.items() if v != FLOAT_BITS}
        prune = {k: float(v) for k, v in self.prune.items() if v != 0}
        object.__setattr__(self, "bits", _frozen(bits))
        object.__setattr__(self, "prune", _frozen(prune))

    def bits_of(self, layer: str) -> int:
        """The weight bit width of ``layer`` (32 when not listed)."""
        return int(self.bits.get(layer, FLOAT_BITS))

    def prune_of(self, layer: str) -> float:
        """The pruning ratio of ``layer`` (0 when not listed)."""
        return float(self.prune.get(layer, 0.0))

    def is_identity(self) -> bool:
        """True when the config leaves the teacher exactly as it is."""
        return self.student == TEACHER and not self.bits and not self.prune

    def restricted_to(self, layers: set[str] | list[str]) -> CompressionConfig:
        """The same config keeping only settings of ``layers`` (those a student has)."""
        keep = set(layers)
        return CompressionConfig(
            student=self.student,
            bits={k: v for k, v in self.bits.items() if k in keep},
            prune={k: v for k, v in self.prune.items() if k in keep},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "student": self.student,
            "bits": dict(self.bits),
            "prune": dict(self.prune),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionConfig:
        allowed = {"version", "student", "bits", "prune"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"Unknown CompressionConfig key(s) {sorted(unknown)}; allowed: {sorted(allowed)}."
            )
        return cls(
            student=data.get("student", TEACHER),
            bits=dict(data.get("bits", {})),
            prune=dict(data.get("prune", {})),
            version=int(data.get("version", CONFIG_VERSION)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CompressionConfig:
        return cls.from_dict(json.loads(text))
