"""Per-layer sensitivity as a report shows it: one frame, a per-layer table and two heatmaps.

Reads the tables :mod:`spaces.sensitivity` measures, as plain dicts
(``SensitivityTable.to_dict()``: ``{"model", "method", "metric", "base_metric", "rows",
"seconds", "probes": [{"kind", "layer", "value", "distortion", "metric_drop"}]}``); a study
stores them as the user attribute :data:`search.study_attrs.SENSITIVITY_ATTR`
(``{model name: table dict}``).
Nothing here needs the study: ``frontier sensitivity`` and the report call the same functions.

What the figures show: a probe changes one layer alone (quantized to ``value`` bits, or
``value`` of its weights pruned) and measures the output's distortion (noise-to-signal ratio)
and, where measured rather than estimated, the metric's drop on a fixed validation subset.
A heatmap panel is coloured by the metric drop in points when every probe in it has one, and
by log10 of the distortion otherwise (a gradient estimate has no metric drop). The per-layer
table ranks layers by their mean metric drop over their probes (then by mean distortion; by
mean distortion alone where a drop is missing): most sensitive first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Columns of :func:`sensitivity_frame`.
COLUMNS = ["model", "kind", "layer", "value", "distortion", "metric_drop"]
#: The heatmaps' panels: probe kind -> its axis label.
PANELS = {"bits": "weight bits", "prune": "pruning ratio"}
#: Smallest distortion drawn on the log scale (a probe that changed nothing has 0).
_FLOOR = 1e-12


def sensitivity_frame(tables: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every probe of every table, one row each (columns :data:`COLUMNS`); ``metric_drop`` is
    a fraction (NaN where only estimated). Layers keep the order the tables give them."""
    rows = []
    for name, table in tables.items():
        for probe in table.get("probes", ()):
            drop = probe.get("metric_drop")
            rows.append(
                {
                    "model": str(table.get("model", name)),
                    "kind": str(probe["kind"]),
                    "layer": str(probe["layer"]),
                    "value": float(probe["value"]),
                    "distortion": float(probe["distortion"]),
                    "metric_drop": math.nan if drop is None else float(drop),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _of(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    return frame[frame["model"] == model]


def layer_order(frame: pd.DataFrame, model: str = "teacher") -> list[str]:
    """``model``'s layers in the order the table gives them (model order)."""
    return list(dict.fromkeys(_of(frame, model)["layer"]))


@dataclass(frozen=True)
class Heatmap:
    """One panel: layers (rows) by probed values (columns).

    Attributes:
        kind: ``"bits"`` or ``"prune"``.
        layers: Row labels, in model order.
        values: Column values, ascending (bit widths or ratios).
        z: The colour of each cell (NaN where not probed).
        text: Each cell's label.
        measured: Whether ``z`` is the metric drop in points (else log10 distortion).
        colour_label: What the colour means.
    """

    kind: str
    layers: list[str]
    values: list[float]
    z: np.ndarray
    text: list[list[str]]
    measured: bool
    colour_label: str

    @property
    def empty(self) -> bool:
        return not self.layers or not self.values


def heatmap(frame: pd.DataFrame, kind: str, model: str = "teacher") -> Heatmap:
    """The ``kind`` panel of ``model``'s heatmap (see the module docstring for the colour)."""
    rows = _of(frame, model)
    layers = layer_order(frame, model)
    probes = rows[rows["kind"] == kind]
    values = sorted(set(probes["value"]))
    measured = bool(len(probes)) and bool(probes["metric_drop"].notna().all())
    z = np.full((len(layers), len(values)), np.nan)
    text = [["" for _ in values] for _ in layers]
    for _, p in probes.iterrows():
        i, j = layers.index(p["layer"]), values.index(p["value"])
        if measured:
            z[i, j] = 100 * p["metric_drop"]
            text[i][j] = f"{z[i, j]:.1f}"
        else:
            z[i, j] = math.log10(max(p["distortion"], _FLOOR))
            text[i][j] = f"{p['distortion']:.0e}"
    label = "metric drop (points)" if measured else "log10 distortion"
    if probes.empty:  # nothing of this kind probed: an empty panel
        return Heatmap(kind, [], [], np.empty((0, 0)), [], False, label)
    return Heatmap(kind, layers, values, z, text, measured, label)


def value_label(kind: str, value: float) -> str:
    """A probed value as a column label: ``4b`` or ``0.50``."""
    return f"{int(value)}b" if kind == "bits" else f"{value:.2f}"


def sensitivity_table(frame: pd.DataFrame, model: str = "teacher") -> pd.DataFrame:
    """Per layer of ``model``, most sensitive first (see the module docstring for the rank).

    Columns: ``layer``; ``bits`` and ``bits_drop`` / ``bits_distortion`` (the lowest probed
    bit width and the drop in points / distortion there); ``prune`` and ``prune_drop`` /
    ``prune_distortion`` (the highest probed ratio); ``mean_drop`` (points) and
    ``mean_distortion`` over every probe of the layer. NaN where not probed or not measured.
    """
    rows = _of(frame, model)
    out = []
    for layer in layer_order(frame, model):
        mine = rows[rows["layer"] == layer]
        entry: dict[str, object] = {"layer": layer}
        for kind, pick in (("bits", "idxmin"), ("prune", "idxmax")):
            probes = mine[mine["kind"] == kind]
            at = getattr(probes["value"], pick)() if len(probes) else None
            entry[kind] = probes.loc[at, "value"] if at is not None else math.nan
            entry[f"{kind}_drop"] = (
                100 * probes.loc[at, "metric_drop"] if at is not None else math.nan
            )
            entry[f"{kind}_distortion"] = (
                probes.loc[at, "distortion"] if at is not None else math.nan
            )
        drops = mine["metric_drop"]
        entry["mean_drop"] = 100 * float(drops.mean()) if drops.notna().all() else math.nan
        entry["mean_distortion"] = float(mine["distortion"].mean())
        out.append(entry)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    ranked = table.assign(_drop=table["mean_drop"].fillna(-math.inf))
    ranked = ranked.sort_values(["_drop", "mean_distortion"], ascending=False, kind="stable")
    return ranked.drop(columns="_drop").reset_index(drop=True)


def cost_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """What measuring cost, e.g. ``"12.3 s in all (teacher 8.1 s: measured, 512 validation
    rows; w0.5 4.2 s: fisher, 512 validation rows)"``; ``""`` without tables."""
    if not tables:
        return ""
    parts = []
    total = 0.0
    for name, t in tables.items():
        seconds = float(t.get("seconds", math.nan))
        total += seconds if math.isfinite(seconds) else 0.0
        parts.append(f"{t.get('model', name)} {seconds:.1f} s: {t.get('method', '?')}, "
                     f"{t.get('rows', '?')} validation rows")  # fmt: skip
    return f"{total:.1f} s in all ({'; '.join(parts)})"


def write_heatmaps(frame: pd.DataFrame, path: Path, model: str = "teacher") -> Path:
    """Draw ``model``'s sensitivity heatmaps into one PNG at ``path``: layer x bits beside
    layer x pruning ratio (matplotlib, Agg backend). Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [heatmap(frame, kind, model) for kind in PANELS]
    n_layers = max([len(p.layers) for p in panels] + [1])
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.6 + 0.32 * n_layers), dpi=110, squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        title = f"layer x {PANELS[p.kind]}"
        if p.empty:
            ax.text(0.5, 0.5, "not probed", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            continue
        cmap = "Reds" if p.measured else "viridis"
        finite = p.z[np.isfinite(p.z)]
        low = 0.0 if p.measured else (float(finite.min()) if finite.size else 0.0)
        high = float(finite.max()) if finite.size else 1.0
        im = ax.imshow(p.z, cmap=cmap, vmin=low, vmax=max(high, low + 1e-9), aspect="auto")
        dark = im.norm(np.nan_to_num(p.z, nan=low)) > 0.6
        for i, row in enumerate(p.text):
            for j, label in enumerate(row):
                # viridis is dark at the bottom, Reds at the top
                on_dark = dark[i, j] if p.measured else not dark[i, j]
                colour = "white" if on_dark else "black"
                ax.text(j, i, label, ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(p.values)), [value_label(p.kind, v) for v in p.values], fontsize=8)
        ax.set_yticks(range(len(p.layers)), p.layers, fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, label=p.colour_label, shrink=0.8)
    fig.suptitle(f"{model}: per-layer sensitivity (one layer changed at a time)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
