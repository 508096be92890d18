"""What one study's report shows, read from the stored study: :class:`StudyReport`.

Plain data only (DataFrames, numbers, strings); the renderers in this package draw it.

The front, the hypervolume and the knee are over the study's own objectives (recorded in the
study; accuracy, size and latency unless ``[study] objectives`` said otherwise). Hypervolume is
:mod:`search.quality`'s (the same figure ``frontier status`` prints): objectives divided by the
study's own teacher's, against one fixed reference point, so studies from different machines
compare by relative gains. Only feasible trials count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from search.environment import ENV_ATTR
from search.families import (
    STUDENT_LAYERS_ATTR,
    StudentLayers,
    family_fronts,
    family_members,
    techniques_text,
)
from search.final import final_figures
from search.knee import knee_index
from search.objective import describe
from search.objective_names import DEFAULT_OBJECTIVES, directions, study_objectives
from search.quality import hypervolume_curve
from search.report.sensitivity import sensitivity_frame
from search.results import FINAL_COLUMNS, front_frame, quoted_latency, trials_frame
from search.stored import StoredStudy
from search.study_attrs import SENSITIVITY_ATTR
from search.testsplit import TEST_COLUMNS, held_out_figures
from spaces import CompressionConfig

#: Trial user attributes shown when present (other issues add them); not all are in
#: ``trials_frame``'s columns.
EXTRA_ATTRS = ("bops", *TEST_COLUMNS, *FINAL_COLUMNS, "config", "warm_start")
#: Per-layer value a layer takes when its config does not list it.
POLICY_DEFAULTS = {"bits": 32.0, "prune": 0.0}


@dataclass
class StudyReport:
    """Everything one study's report shows.

    Attributes:
        name: The study's name.
        stored: The opened study.
        trials: ``trials_frame`` of the study plus :data:`EXTRA_ATTRS` columns.
        front: Front rows, most accurate first, with test figures, ``summary`` and ``knee``.
        teacher: The teacher baseline's row, when the study has one.
        hv: Hypervolume after each trial: columns ``trial``, ``hypervolume``.
        knee_trial: The suggested knee point's trial number (``None`` for an empty front).
        test_note: Where the test figures come from.
        policies: Per family (``bits``, ``prune``, ...): front trials x layers.
        environment: What the study recorded about its machine, or ``{}``.
        settings: The study's settings as plain data, or ``{}``.
        objectives: What the study optimises (result column names), in canonical order.
        families: The technique families' table (:func:`search.families.family_fronts`).
        family_fronts: Each family's front rows, by family name (as in ``families``).
        sensitivity: Every sensitivity probe the study measured
            (:func:`search.report.sensitivity.sensitivity_frame`); empty when none.
        sensitivity_tables: The stored sensitivity tables by model name, or ``{}``.

    ``trials`` and ``front`` carry ``techniques`` (the techniques each trial combines, in
    words) and ``warm_start`` (the allocation a warm start came from; ``""`` for the others
    and in studies that predate warm starts).
    """

    name: str
    stored: StoredStudy
    trials: pd.DataFrame
    front: pd.DataFrame
    teacher: pd.Series | None
    hv: pd.DataFrame
    knee_trial: int | None
    test_note: str
    policies: dict[str, pd.DataFrame]
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    families: pd.DataFrame = field(default_factory=pd.DataFrame)
    family_fronts: dict[str, pd.DataFrame] = field(default_factory=dict)
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)
    sensitivity_tables: dict[str, Any] = field(default_factory=dict)

    @property
    def hypervolume(self) -> float:
        """The hypervolume after the last trial (0 before any)."""
        return float(self.hv["hypervolume"].iloc[-1]) if len(self.hv) else 0.0

    @property
    def accuracy_floor(self) -> float | None:
        """The lowest validation accuracy within the study's drop budget."""
        drop = self.settings.get("budget", {}).get("max_accuracy_drop")
        if drop is None or self.teacher is None:
            return None
        return float(self.teacher["accuracy"]) - drop / 100.0

    @property
    def sensitivity_model(self) -> str | None:
        """The model whose sensitivity the report shows: the teacher when it was measured,
        else the first model measured; ``None`` when the study measured none."""
        if self.sensitivity.empty:
            return None
        models = list(dict.fromkeys(self.sensitivity["model"]))
        return "teacher" if "teacher" in models else models[0]

    def budget(self, key: str) -> float | None:
        """The study's budget ``key`` (``max_size_bytes``, ...), or ``None`` when unset."""
        value = self.settings.get("budget", {}).get(key)
        return float(value) if value is not None else None

    def counts(self) -> dict[str, int]:
        """How many trials, complete, feasible, failed, pruned and front points."""
        t = self.trials
        return {
            "trials": len(t),
            "complete": int((t["state"] == "COMPLETE").sum()),
            "feasible": int(t["feasible"].astype(bool).sum()),
            "failed": int((t["state"] == "FAIL").sum()),
            "pruned": int((t["state"] == "PRUNED").sum()),
            "front": len(self.front),
        }

    def wall_time_s(self) -> float:
        """Seconds from the first trial's start to the last trial's end (NaN before any)."""
        starts = [t.datetime_start for t in self.stored.study.get_trials(deepcopy=False)]
        ends = [t.datetime_complete for t in self.stored.study.get_trials(deepcopy=False)]
        s = [x for x in starts if x is not None]
        e = [x for x in ends if x is not None]
        return (max(e) - min(s)).total_seconds() if s and e else math.nan


# ---------------------------------------------------------------- building


def _with_attrs(df: pd.DataFrame, study: optuna.Study, names: Sequence[str]) -> pd.DataFrame:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    df = df.copy()
    for name in names:
        if name not in df.columns:
            df[name] = [trials[n].user_attrs.get(name, math.nan) for n in df["trial"]]
    return df


def knee_trial(front: pd.DataFrame, objectives: Sequence[str]) -> int | None:
    """The front's suggested knee over ``objectives`` (costs on a log scale), or ``None``.

    Latency is the quoted figure (:func:`search.results.quoted_latency`: the final
    side-by-side timing where known); accuracy is validation accuracy.
    """
    if front.empty:
        return None
    names = list(objectives)
    points = front.assign(latency_ms=quoted_latency(front))[names].astype(float).to_numpy()
    logs = [n != "accuracy" for n in names]  # bytes, ms and BOPs: ratios matter
    return int(front["trial"].iloc[knee_index(points, directions(names), log_scale=logs)])


def _layer_order(study: optuna.Study) -> list[str]:
    for t in study.get_trials(deepcopy=False):
        layers = [k.split(".", 1)[1] for k in t.distributions if k.startswith("bits.")]
        if layers:
            return layers
    return []


def policy_tables(front: pd.DataFrame, layers: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per family of per-layer settings (``bits``, ``prune``, ...): front trials x layers.

    Read from each trial's stored configuration, so families that later releases add to
    ``CompressionConfig`` (any mapping of layer name to a number) show up without change.
    """
    configs: dict[int, dict[str, Any]] = {}
    for _, row in front.iterrows():
        raw = row.get("config")
        data: dict[str, Any] = {}
        if isinstance(raw, str):
            data = json.loads(raw)
        else:  # trials from a run that stored no config: read the parameters
            for col, value in row.items():
                fam, _, layer = str(col).partition(".")
                if fam in POLICY_DEFAULTS and layer and pd.notna(value):
                    data.setdefault(fam, {})[layer] = value
        configs[int(row["trial"])] = data
    families = [f for f in POLICY_DEFAULTS if any(f in c for c in configs.values())]
    for c in configs.values():
        families += [k for k, v in c.items() if isinstance(v, Mapping) and k not in families and v]
    tables: dict[str, pd.DataFrame] = {}
    for fam in families:
        cols = list(layers) or sorted({k for c in configs.values() for k in c.get(fam, {})})
        extra = sorted({k for c in configs.values() for k in c.get(fam, {})} - set(cols))
        if not cols and not extra:  # no layer known and none listed: nothing to show
            continue
        default = POLICY_DEFAULTS.get(fam, math.nan)
        tables[fam] = pd.DataFrame(
            [
                [float(c.get(fam, {}).get(layer, default)) for layer in [*cols, *extra]]
                for c in configs.values()
            ],
            index=pd.Index(list(configs), name="trial"),
            columns=[*cols, *extra],
        )
    return tables


def config_summary(row: pd.Series) -> str:
    """A trial row's compression in words (its student's name when it stored no config)."""
    raw = row.get("config")
    try:
        if isinstance(raw, str):
            return describe(CompressionConfig.from_json(raw))
    except ValueError:
        pass
    return str(row.get("student", ""))


def build_report(stored: StoredStudy, *, remeasure: bool = True) -> StudyReport:
    """Read a study's trials and compute what its report shows.

    Args:
        stored: The opened study.
        remeasure: Compute the final figures of the front and the baselines (side-by-side
            latency, test split) when the run stored none (:mod:`search.final`); ``False``
            shows what is stored (search-time latency where no final one is).
    """
    study = stored.study
    # the final figures the run did not store (an interrupted run, an older release)
    final = final_figures(stored) if remeasure else None
    trials = _with_attrs(trials_frame(study), study, EXTRA_ATTRS)
    if "student" not in trials:
        trials["student"] = ""
    # a study from before warm starts has no such column; a trial that was none has ""
    warm = trials["warm_start"]
    trials["warm_start"] = warm.where(warm.map(lambda v: isinstance(v, str)), "").astype(str)
    layers = student_layers(study)
    trials["techniques"] = [techniques_text(r, layers) for _, r in trials.iterrows()]
    front = front_frame(trials).copy()
    teacher_rows = trials[(trials["baseline"] == "teacher") & (trials["state"] == "COMPLETE")]
    teacher = teacher_rows.iloc[0] if len(teacher_rows) else None
    done = trials[trials["state"] == "COMPLETE"]
    baselines = done[done["baseline"].astype(str) != ""]
    wanted = [int(n) for n in front["trial"]] + [int(n) for n in baselines["trial"]]
    figures = final.test if final is not None else held_out_figures(stored, wanted, remeasure=False)
    for col in TEST_COLUMNS:
        values = {n: figures.frame.loc[n, col] for n in figures.frame.index}
        trials[col] = [values.get(int(n), trials.loc[i, col]) for i, n in trials["trial"].items()]
        front[col] = [values.get(int(n), math.nan) for n in front["trial"]]
    if teacher is not None:
        teacher = trials[trials["trial"] == teacher["trial"]].iloc[0]
    front["summary"] = [config_summary(r) for _, r in front.iterrows()]
    objectives = study_objectives(study)
    knee = knee_trial(front, objectives)
    front["knee"] = front["trial"] == knee
    env = study.user_attrs.get(ENV_ATTR, {})
    settings = stored.spec.to_dict() if stored.spec is not None else {}
    drop = settings.get("budget", {}).get("max_accuracy_drop")
    members = family_members(trials, objectives, layers)
    tables = study.user_attrs.get(SENSITIVITY_ATTR)
    tables = dict(tables) if isinstance(tables, Mapping) else {}
    return StudyReport(
        name=study.study_name,
        stored=stored,
        trials=trials,
        front=front,
        teacher=teacher,
        hv=hypervolume_curve(trials, objectives),
        knee_trial=knee,
        test_note=figures.note,
        policies=policy_tables(front, _layer_order(study)),
        environment=dict(env) if isinstance(env, Mapping) else {},
        settings=settings,
        objectives=objectives,
        families=family_fronts(trials, objectives, layers, max_accuracy_drop=drop),
        family_fronts={name: rows[rows["front"]] for name, rows in members.items()},
        sensitivity=sensitivity_frame(tables),
        sensitivity_tables=tables,
    )


def student_layers(study: optuna.Study) -> StudentLayers | None:
    """Each model's compressible layers as the study recorded them
    (:data:`search.families.STUDENT_LAYERS_ATTR`), or ``None`` for a study that did not
    (then every per-layer parameter counts when naming a trial's techniques)."""
    recorded = study.user_attrs.get(STUDENT_LAYERS_ATTR)
    if not isinstance(recorded, Mapping):
        return None
    return {str(k): [str(n) for n in v] for k, v in recorded.items() if isinstance(v, list)}
