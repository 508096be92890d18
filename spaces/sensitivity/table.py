"""The sensitivity records: the study file's ``[sensitivity]`` settings, one probe, one table."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Methods a study may name: each probe measured, a gradient estimate, or chosen by cost.
METHODS = ("measured", "fisher", "auto")
#: Kinds of probe: a layer's weight bits, its unstructured pruning ratio, or a channel group's
#: structured pruning ratio (keyed by the group's root layer).
KINDS = ("bits", "prune", "channels")
#: Weight widths at or above this are treated as lossless (float16 rounding is ~1e-7 of the
#: signal) and never probed.
LOSSLESS_BITS = 16


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: One table for every field of :class:`SensitivitySettings`: (check, what it must be).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "enabled": (lambda v: isinstance(v, bool), "a bool"),
    "method": (lambda v: v in METHODS, f"one of {list(METHODS)}"),
    "rows": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "warm_starts": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "int8_warm_starts": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "prune_space": (lambda v: isinstance(v, bool), "a bool"),
    "max_probe_s": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "max_probe_share": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
}


@dataclass(frozen=True)
class SensitivitySettings:
    """The study file's ``[sensitivity]`` table.

    Attributes:
        enabled: Measure the sensitivities and enqueue warm starts after the baselines.
        method: ``"measured"`` (each probe applied alone and the outputs compared),
            ``"fisher"`` (a gradient estimate, for large models) or ``"auto"`` (measured when
            that is cheap next to the search: see ``max_probe_s`` and ``max_probe_share``).
        rows: Validation rows probed: the first ``rows`` of the split (a fixed subset).
        warm_starts: Allocations enqueued (0: none).
        int8_warm_starts: Allocations enqueued after those, on the part of the space that
            int8 kernels run (:func:`spaces.kernel_space.int8_space`), to seed the latency
            axis (0: none; nothing either when the space offers no 8-bit activations or no
            per-row weight scales).
        prune_space: Drop per-layer bit widths and pruning ratios that cannot be on the front.
        max_probe_s: ``"auto"`` measures when the probes' estimated cost is below this many
            seconds, whatever the study.
        max_probe_share: ``"auto"`` also measures when the probes' estimated cost is at most
            this share of the least the study's trials will cost (their scoring and
            fine-tuning passes, see :func:`spaces.sensitivity.measure_sensitivity`).
    """

    enabled: bool = True
    method: str = "auto"
    rows: int = 512
    warm_starts: int = 8
    int8_warm_starts: int = 0
    prune_space: bool = False
    max_probe_s: float = 10.0
    max_probe_share: float = 0.1

    def __post_init__(self) -> None:
        for key, (ok, rule) in _RULES.items():
            value = getattr(self, key)
            if not ok(value):
                raise ValueError(f"'sensitivity.{key}' must be {rule}. Got {value!r} instead.")

    def fingerprint(self) -> str:
        """Short hash of what changes the figures (method and rows): cached tables key on it."""
        text = json.dumps({"method": self.method, "rows": self.rows}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Probe:
    """One layer (or channel group) changed alone, and what it did to the outputs.

    Attributes:
        kind: ``"bits"``, ``"prune"`` or ``"channels"``.
        layer: The layer's name; for ``"channels"`` the group's root layer.
        value: The bit width (an integer, as a float) or the ratio.
        distortion: Output noise-to-signal ratio ``mean((y' - y)^2) / mean(y^2)`` over the
            probed rows (measured or estimated), >= 0.
        metric_drop: The unmodified model's metric minus the probed model's, on the probed
            rows, as a fraction (0.012 is 1.2 points); ``None`` when only estimated.
    """

    kind: str
    layer: str
    value: float
    distortion: float
    metric_drop: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "value": self.value,
            "distortion": self.distortion,
            "metric_drop": self.metric_drop,
        }


@dataclass(frozen=True)
class SensitivityTable:
    """Every probe of one model (the teacher or a student).

    Attributes:
        model: ``"teacher"`` or a student's name.
        method: ``"measured"`` or ``"fisher"``: what was actually used.
        metric: The task metric's name.
        base_metric: The unmodified model's metric on the probed rows.
        rows: How many validation rows were probed.
        seconds: What measuring cost, wall-clock.
        probes: One record per (kind, layer, value).
    """

    model: str
    method: str
    metric: str
    base_metric: float
    rows: int
    seconds: float
    probes: tuple[Probe, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form; :meth:`from_dict` reads it back."""
        return {
            "model": self.model,
            "method": self.method,
            "metric": self.metric,
            "base_metric": self.base_metric,
            "rows": self.rows,
            "seconds": self.seconds,
            "probes": [p.to_dict() for p in self.probes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityTable:
        """Read a table written by :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: the data is not such a table.
        """
        probes = tuple(
            Probe(
                kind=str(p["kind"]),
                layer=str(p["layer"]),
                value=float(p["value"]),
                distortion=float(p["distortion"]),
                metric_drop=None if p["metric_drop"] is None else float(p["metric_drop"]),
            )
            for p in data["probes"]
        )
        bad = sorted({p.kind for p in probes} - set(KINDS))
        if bad:
            raise ValueError(f"Unknown probe kind(s) {bad}; expected {list(KINDS)}.")
        return cls(
            model=str(data["model"]),
            method=str(data["method"]),
            metric=str(data["metric"]),
            base_metric=float(data["base_metric"]),
            rows=int(data["rows"]),
            seconds=float(data["seconds"]),
            probes=probes,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per probe: model, kind, layer, value, distortion, metric_drop."""
        import pandas as pd  # lazily: only the report and the CLI need it

        columns = ["model", "kind", "layer", "value", "distortion", "metric_drop"]
        rows = [{"model": self.model, **p.to_dict()} for p in self.probes]
        return pd.DataFrame(rows, columns=columns)

    def points(self, kind: str, layer: str) -> list[tuple[float, float]]:
        """The probed ``(value, distortion)`` pairs of one layer and kind, by value."""
        probes = (p for p in self.probes if p.kind == kind and p.layer == layer)
        return sorted((p.value, p.distortion) for p in probes)

    def distortion(self, kind: str, layer: str, value: float) -> float:
        """The distortion of ``layer`` at ``value``, probed or interpolated.

        - bits >= 16 and ratio 0 cost nothing (0.0);
        - a probed value gives its figure;
        - bits between two probed widths: interpolated linearly in log-distortion (uniform
          quantization noise falls by 4x per bit, a straight line in log scale); beyond the
          probed widths, extrapolated at that 4x per bit from the nearest one;
        - ratios between two probed ratios (0 counts as probed, at 0.0): interpolated linearly;
          beyond the largest, extrapolated along the last segment.

        Raises:
            KeyError: nothing of that kind was probed on that layer.
        """
        if kind not in KINDS:
            raise ValueError(f"Unknown probe kind {kind!r}; expected one of {list(KINDS)}.")
        if (kind == "bits" and value >= LOSSLESS_BITS) or (kind != "bits" and value <= 0):
            return 0.0
        pts = self.points(kind, layer)
        if not pts:
            raise KeyError(f"No {kind!r} probe of layer {layer!r} in the {self.model} table.")
        for v, d in pts:
            if math.isclose(v, value, abs_tol=1e-9):
                return d
        return _bits_curve(pts, value) if kind == "bits" else _ratio_curve(pts, value)


def _bits_curve(pts: list[tuple[float, float]], bits: float) -> float:
    below = [(v, d) for v, d in pts if v < bits]
    above = [(v, d) for v, d in pts if v > bits]
    if not below:
        v, d = above[0]
        return d * 4.0 ** (v - bits)
    if not above:
        v, d = below[-1]
        return d * 4.0 ** (v - bits)
    (v0, d0), (v1, d1) = below[-1], above[0]
    t = (bits - v0) / (v1 - v0)
    if d0 <= 0 or d1 <= 0:
        return d0 + t * (d1 - d0)
    return math.exp(math.log(d0) + t * (math.log(d1) - math.log(d0)))


def _ratio_curve(pts: list[tuple[float, float]], ratio: float) -> float:
    curve = [(0.0, 0.0), *pts]
    for (v0, d0), (v1, d1) in itertools.pairwise(curve):
        if v0 <= ratio <= v1:
            return d0 + (ratio - v0) / (v1 - v0) * (d1 - d0)
    (v0, d0), (v1, d1) = curve[-2], curve[-1]
    slope = max(0.0, (d1 - d0) / (v1 - v0))
    return d1 + slope * (ratio - v1)
