"""Which technique? The front each technique family reaches alone, from a study's own trials.

Each trial is classified by its configuration (its parameters, as ``trials_frame`` holds them):

- **quantization**: some layer the trial's model has keeps fewer than 32 weight bits. Storing
  a layer as float16 (16 bits) counts: it halves the layer's bytes as integer bits do, and it
  is a choice of the bits dimension. Activation bits, the scale granularity and the rounding
  act only on integer layers, so they add no technique of their own.
- **pruning**: some layer loses weights (``prune.<layer>`` > 0) or some channel group loses
  channels (``channels.<root>`` > 0).
- **student**: the trial's model is a distilled student (``student`` is not ``"teacher"``).

Only the layers the trial's model has count: a shallower student has no ``fc2``, and the
``bits.fc2`` the sampler drew for it (every trial has every parameter; see
:mod:`spaces.space`) was never applied. The layers per model come from ``layers``
(model name -> its compressible layers; the study user attribute
:data:`STUDENT_LAYERS_ATTR` records them, :func:`student_layers` computes them); a model
missing from it, or ``layers=None``, is read over every per-layer column of the row.

The families are *quantization only*, *pruning only* and *student only* (a distilled student
with neither quantization nor pruning), and *joint*: every trial of the study. A trial with no
technique (the teacher baseline, or a sampled configuration that changes nothing) is the
reference point of every family: each family's front is over its own trials and the teacher,
so it always holds the uncompressed model, as a practitioner's "quantization alone" starts
from the teacher. A family with no complete trial of its own (a study that never tried
pruning alone) is left out of :func:`family_fronts`' table; *joint* is always in it.

A family's front is the feasible front over the study's objectives
(:func:`search.results.front_mask`), its hypervolume :func:`search.quality.front_hypervolume`
(the report's reference), and its best size and best latency are the smallest packed size and
the lowest quoted latency (:func:`search.results.quoted_latency`: the final side-by-side figure
where present) among its feasible trials within the accuracy budget: the teacher's validation
accuracy less ``max_accuracy_drop`` points, or less 1 point when the study has no drop budget
(from the best feasible accuracy when the study has no teacher). The joint front holds every
family's front points or points that dominate them, so its hypervolume is at least every
family's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.objective_names import DEFAULT_OBJECTIVES
from search.quality import front_hypervolume, teacher_figures
from search.results import front_mask, quoted_latency
from spaces.config import FLOAT_BITS, TEACHER

if TYPE_CHECKING:
    from evaluators.cost import CostModel

QUANTIZATION = "quantization"
PRUNING = "pruning"
STUDENT = "student"
#: Techniques in the order they are named (``"quantization + pruning + student"``).
TECHNIQUES = (QUANTIZATION, PRUNING, STUDENT)
#: Each family by name, with the one technique its trials use (``None``: every trial).
FAMILIES: dict[str, frozenset[str] | None] = {
    "quantization only": frozenset({QUANTIZATION}),
    "pruning only": frozenset({PRUNING}),
    "student only": frozenset({STUDENT}),
    "joint": None,
}
JOINT = "joint"
#: Study user attribute holding each model's compressible layers: ``{model name: [layer, ...]}``.
STUDENT_LAYERS_ATTR = "student_layers"
#: The drop (points) that "within the accuracy budget" means for a study without one.
DEFAULT_DROP_POINTS = 1.0
#: Columns of :func:`family_fronts`' table, in order.
COLUMNS = [
    "family",
    "trials",
    "feasible",
    "front",
    "hypervolume",
    "accuracy_floor",
    "best_size_bytes",
    "best_size_trial",
    "best_latency_ms",
    "best_latency_trial",
]
_PER_LAYER = ("bits", "prune", "channels")

#: Model name -> the compressible layers it has.
StudentLayers = Mapping[str, Collection[str]]


def student_layers(costs: CostModel, models: Sequence[str]) -> dict[str, list[str]]:
    """Each of ``models``' compressible layers, in model order, from its (untrained)
    architecture: what :data:`STUDENT_LAYERS_ATTR` records."""
    return {name: list(costs.architecture(name).layers) for name in dict.fromkeys(models)}


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _student(row: Mapping[str, Any] | pd.Series) -> str:
    """The row's model name (``"teacher"`` when it names none)."""
    value = row.get("student")
    if not isinstance(value, str) or not value:
        return TEACHER
    return value


def _from_config(raw: object) -> dict[str, Any] | None:
    """A stored configuration (JSON) as the columns ``trials_frame`` names its parameters."""
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {"student": data.get("student", TEACHER)}
    for kind in _PER_LAYER:
        values = data.get(kind)
        if isinstance(values, dict):
            out |= {f"{kind}.{layer}": v for layer, v in values.items()}
    return out


def technique_of(
    row: Mapping[str, Any] | pd.Series, layers: StudentLayers | None = None
) -> frozenset[str]:
    """The techniques a trial's configuration uses (see the module docstring).

    Args:
        row: A trial's row of ``trials_frame`` (``student``, ``bits.<layer>``,
            ``prune.<layer>``, ``channels.<root>``; a missing or NaN value is the default:
            float, unpruned). A row with a stored configuration (``config``, JSON: what the
            trial built, as the report's trials carry it) is read from it instead.
        layers: Per model name, the layers it has; ``None`` (or a model missing from it):
            every per-layer column counts.

    Returns:
        A subset of :data:`TECHNIQUES`; empty for the teacher itself.
    """
    row = _from_config(row.get("config")) or row
    student = _student(row)
    own = None if layers is None else layers.get(student)
    kept = None if own is None else set(own)
    found: set[str] = {STUDENT} if student != TEACHER else set()
    for key, value in row.items():
        kind, dot, layer = str(key).partition(".")
        if not dot or kind not in _PER_LAYER or (kept is not None and layer not in kept):
            continue
        number = _number(value)
        if number is None:
            continue
        if kind == "bits" and number < FLOAT_BITS:
            found.add(QUANTIZATION)
        elif kind != "bits" and number > 0:
            found.add(PRUNING)
    return frozenset(found)


def describe_techniques(techniques: Collection[str]) -> str:
    """Techniques in words: ``"quantization + pruning"``, or ``"none (the teacher)"``."""
    named = [t for t in TECHNIQUES if t in techniques]
    return " + ".join(named) if named else "none (the teacher)"


def techniques_text(row: Mapping[str, Any] | pd.Series, layers: StudentLayers | None = None) -> str:
    """:func:`technique_of` in words, e.g. ``"quantization + pruning"``, ``"student"`` or
    ``"none (the teacher)"``."""
    return describe_techniques(technique_of(row, layers))


def techniques_column(trials: pd.DataFrame, layers: StudentLayers | None = None) -> pd.Series:
    """:func:`technique_of` of every row of ``trials`` (a Series of frozensets)."""
    return pd.Series(
        [technique_of(row, layers) for _, row in trials.iterrows()],
        index=trials.index,
        dtype=object,
    )


def _using(used: pd.Series, technique: frozenset[str]) -> pd.Series:
    """Which rows use exactly ``technique`` (a Series of frozensets compared element-wise:
    pandas would read a set on the right of ``==`` as a sequence)."""
    return used.map(lambda t: t == technique).astype(bool)


def family_members(
    trials: pd.DataFrame,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    layers: StudentLayers | None = None,
) -> dict[str, pd.DataFrame]:
    """Each present family's trials (its own and the teacher's), ``front`` recomputed over
    ``objectives`` within the family; a family with no complete trial of its own is left out,
    ``joint`` (every trial) never is."""
    used = techniques_column(trials, layers)
    complete = trials["state"] == "COMPLETE"
    reference = used.map(len) == 0
    out: dict[str, pd.DataFrame] = {}
    for name, technique in FAMILIES.items():
        if technique is None:
            rows = trials.copy()
        else:
            own = _using(used, technique)
            if not (own & complete).any():
                continue
            rows = trials[own | reference].copy()
        rows["front"] = front_mask(rows, objectives)
        out[name] = rows
    return out


def accuracy_floor(trials: pd.DataFrame, max_accuracy_drop: float | None = None) -> float:
    """The lowest validation accuracy "within the accuracy budget" (see the module docstring);
    NaN when no trial is feasible and there is no teacher."""
    drop = DEFAULT_DROP_POINTS if max_accuracy_drop is None else float(max_accuracy_drop)
    teacher = teacher_figures(trials, ["accuracy"])
    if teacher is not None:
        return teacher["accuracy"] - drop / 100.0
    ok = _feasible(trials)
    return float(ok["accuracy"].max()) - drop / 100.0 if len(ok) else math.nan


def _feasible(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials[(trials["state"] == "COMPLETE") & trials["feasible"].astype(bool)]


def _best(rows: pd.DataFrame, values: pd.Series) -> tuple[float, float]:
    """The smallest finite of ``values`` over ``rows`` and its trial number (NaNs when none)."""
    values = values.astype(float)
    values = values[values.notna() & (values > 0)]
    if values.empty:
        return math.nan, math.nan
    at = values.idxmin()
    return float(values[at]), float(rows.loc[at, "trial"])


def family_fronts(
    trials: pd.DataFrame,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    layers: StudentLayers | None = None,
    *,
    max_accuracy_drop: float | None = None,
) -> pd.DataFrame:
    """One row per present family (see :func:`family_members`), in :data:`FAMILIES`' order.

    Args:
        trials: A study's ``trials_frame`` (``final_latency_ms`` used where present).
        objectives: The study's objectives (result column names).
        layers: Per model name, the layers it has (see :func:`technique_of`).
        max_accuracy_drop: The study's drop budget in points, or ``None`` (then 1 point).

    Returns:
        Columns :data:`COLUMNS`: ``trials`` (complete trials of the family's own technique;
        for ``joint`` every complete trial), ``feasible`` (of those), ``front`` (points on the
        family's front, the teacher included when it is on it), ``hypervolume`` (NaN without
        a teacher), ``accuracy_floor`` and the best size / latency within it with their trials
        (NaN when no feasible trial reaches the floor).
    """
    floor = accuracy_floor(trials, max_accuracy_drop)
    used = techniques_column(trials, layers)
    rows = []
    for name, members in family_members(trials, objectives, layers).items():
        technique = FAMILIES[name]
        own = members if technique is None else members[_using(used[members.index], technique)]
        done = own[own["state"] == "COMPLETE"]
        ok = _feasible(members)
        within = ok[ok["accuracy"].astype(float) >= floor - 1e-12] if math.isfinite(floor) else ok
        size, size_trial = _best(within, within["size_bytes"])
        latency, latency_trial = _best(within, quoted_latency(within))
        rows.append(
            {
                "family": name,
                "trials": len(done),
                "feasible": int(done["feasible"].astype(bool).sum()),
                "front": int(members["front"].sum()),
                "hypervolume": front_hypervolume(members, objectives),
                "accuracy_floor": floor,
                "best_size_bytes": size,
                "best_size_trial": size_trial,
                "best_latency_ms": latency,
                "best_latency_trial": latency_trial,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def absent_families(table: pd.DataFrame) -> list[str]:
    """The families :func:`family_fronts` left out (no complete trial of their own)."""
    shown = set(table["family"])
    return [name for name in FAMILIES if name not in shown]
