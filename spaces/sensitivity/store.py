"""Sensitivity tables kept with the study, and the search space they narrow."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from spaces.files import atomic_write, file_lock, read_json
from spaces.sensitivity.table import (
    LOSSLESS_BITS,
    Probe,
    SensitivitySettings,
    SensitivityTable,
)
from spaces.space import SpaceSettings

log = logging.getLogger("frontier")

#: Without a measured metric (the Fisher estimate), a bit width is hopeless when its output
#: noise is at least as strong as the signal: the outputs are then mostly noise.
HOPELESS_DISTORTION = 1.0


def table_filename(
    model: str,
    settings: SensitivitySettings,
    weights: str,
    *,
    bits: Mapping[str, Sequence[int]],
    prune_ratios: Mapping[str, Sequence[float]],
    channel_ratios: Mapping[str, Sequence[float]],
    granularity: str,
    importance: str = "l2",
) -> str:
    """A file name for one model's table that changes with everything the figures depend on.

    Args:
        model: ``"teacher"`` or the student's name.
        settings: The ``[sensitivity]`` settings (their fingerprint).
        weights: The model's weights fingerprint
            (:func:`spaces.distillation.weights_fingerprint`).
        bits, prune_ratios, channel_ratios, granularity, importance: The probed choices, as
            passed to :func:`spaces.sensitivity.measure_sensitivity`.
    """
    probed = {
        "bits": {k: sorted(v) for k, v in sorted(bits.items())},
        "prune": {k: sorted(v) for k, v in sorted(prune_ratios.items())},
        "channels": {k: sorted(v) for k, v in sorted(channel_ratios.items())},
        "granularity": granularity,
        "importance": importance,
    }
    digest = hashlib.sha256(json.dumps(probed, sort_keys=True).encode()).hexdigest()[:10]
    return f"sensitivity-{model}-{settings.fingerprint()}-w{weights}-p{digest}.json"


def _load(path: Path) -> SensitivityTable | None:
    data = read_json(path)
    if data is None:
        return None
    try:
        return SensitivityTable.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("sensitivity table %s is unreadable (%s); measuring again", path, exc)
        return None


def cached_sensitivity(
    path: str | Path, compute: Callable[[], SensitivityTable]
) -> SensitivityTable:
    """The table stored at ``path``, or ``compute()``'s, stored there first.

    Computed once: processes that ask at the same time wait on the file's lock
    (``<path>.lock``) and read what the first one wrote (atomically).
    """
    path = Path(path)
    table = _load(path)
    if table is not None:
        return table
    with file_lock(path.with_name(path.name + ".lock")):
        table = _load(path)  # another process may have written it while this one waited
        if table is None:
            table = compute()
            text = json.dumps(table.to_dict(), sort_keys=True)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return table


def _hopeless(probe: Probe, max_drop: float) -> bool:
    """Alone, ``probe`` loses more than ``max_drop`` (a fraction); without a measured drop,
    its distortion is at least :data:`HOPELESS_DISTORTION`."""
    if probe.metric_drop is not None:
        return probe.metric_drop > max_drop
    return probe.distortion >= HOPELESS_DISTORTION


def hopeless_bits(table: SensitivityTable, max_drop: float) -> dict[str, int]:
    """Per layer, the widest probed bit width that alone is hopeless (absent: none is).

    Hopeless: its metric drop exceeds ``max_drop`` (a fraction); for a probe without a
    measured drop, its distortion is at least :data:`HOPELESS_DISTORTION`.
    """
    out: dict[str, int] = {}
    for p in table.probes:
        if p.kind == "bits" and _hopeless(p, max_drop):
            out[p.layer] = max(out.get(p.layer, 0), int(p.value))
    return out


def hopeless_ratios(table: SensitivityTable, kind: str, max_drop: float) -> dict[str, float]:
    """Per layer (per group root for ``"channels"``), the smallest probed ratio of ``kind``
    (``"prune"`` or ``"channels"``) that alone is hopeless (absent: none is)."""
    out: dict[str, float] = {}
    for p in table.probes:
        if p.kind == kind and _hopeless(p, max_drop):
            out[p.layer] = min(out.get(p.layer, 1.0), p.value)
    return out


def _below(ratio: float, step: float) -> float:
    """The largest ratio on the grid of ``step`` strictly below ``ratio`` (0 at least)."""
    return max(0.0, round((math.ceil(ratio / step - 1e-9) - 1) * step, 10))


def restricted_space(
    settings: SpaceSettings, table: SensitivityTable, max_drop: float
) -> SpaceSettings:
    """``settings`` without the per-layer choices that ``table`` shows cannot be on the front.

    Bit widths: a width is dropped from a layer when a probe at that width, or at a wider
    one, is hopeless on its own (see :func:`hopeless_bits`): quantization noise only grows as
    bits shrink, so a narrower width than a hopeless one is hopeless too. Lossless widths (16,
    32) are never dropped, and every layer keeps at least its widest choice. The result lists
    the kept choices of every probed layer in ``layer_bits``; other layers keep theirs.

    Pruning ratios: a layer's largest unstructured ratio (``layer_prune_max``) and a channel
    group's largest channel ratio (``layer_channels_max``) fall below the smallest probed ratio
    that is hopeless on its own (see :func:`hopeless_ratios`): magnitude pruning removes a
    growing, nested set of weights (or channels), so a larger ratio loses more still. Ratios
    between the last harmless probe and the first hopeless one stay. A layer whose every
    ratio is hopeless keeps only 0 (no pruning).

    Args:
        settings: The study's space.
        table: The model's sensitivities (the teacher's: the space is keyed by its layers).
        max_drop: The largest metric drop a front point may have, as a fraction (the
            accuracy budget).
    """
    if not max_drop >= 0:
        raise ValueError(f"'max_drop' must be a fraction >= 0. Got {max_drop!r} instead.")
    worst = hopeless_bits(table, max_drop)
    probed = sorted({p.layer for p in table.probes if p.kind == "bits"})
    layer_bits = dict(settings.layer_bits)
    for layer in probed:
        choices = tuple(settings.layer_bits.get(layer, settings.bits))
        limit = worst.get(layer)
        kept = tuple(b for b in choices if limit is None or b > limit or b >= LOSSLESS_BITS) or (
            max(choices),
        )
        layer_bits[layer] = kept
    prune_max = dict(settings.layer_prune_max)
    for layer, ratio in hopeless_ratios(table, "prune", max_drop).items():
        high = settings.layer_prune_max.get(layer, settings.prune_max)
        prune_max[layer] = min(high, _below(ratio, settings.prune_step))
    channels_max = dict(settings.layer_channels_max)
    for root, ratio in hopeless_ratios(table, "channels", max_drop).items():
        high = settings.layer_channels_max.get(root, settings.channels_max)
        channels_max[root] = min(high, _below(ratio, settings.channels_step))
    return dataclasses.replace(
        settings,
        layer_bits=layer_bits,
        layer_prune_max=prune_max,
        layer_channels_max=channels_max,
    )
