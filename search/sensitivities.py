"""The study's sensitivity tables: what is probed for each model, measured once and cached.

Each model of the space (the teacher, every searched student) is probed with the bit widths
the space offers its layers (8 bits and below: 16-bit floats lose next to nothing), a few
pruning ratios per layer (0.25, 0.5, 0.75 where the space allows them, and the layer's
largest), and for the teacher a few channel ratios per prunable group. The measurement itself
is :func:`spaces.sensitivity.measure_sensitivity`; its result is cached as JSON in the study's
``cache/`` folder under a name that holds the model's weights, the probes and the settings, so
every worker and every resumed run reads it instead of measuring again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

from evaluators.latency import computing
from spaces import TEACHER, SearchSpace, StudentPool, compressible_layers
from spaces.distillation import weights_fingerprint
from spaces.sensitivity import (
    SensitivityTable,
    cached_sensitivity,
    measure_sensitivity,
    restricted_space,
    study_forward_rows,
    table_filename,
)
from spaces.task import Task

if TYPE_CHECKING:
    from search.spec import StudySpec

#: Pruning ratios probed per layer (those the space allows), besides the layer's largest.
PROBE_RATIOS = (0.25, 0.5, 0.75)


def _snap(value: float, step: float) -> float:
    return round(int(value / step + 1e-9) * step, 10)


def _probe_ratios(high: float, step: float) -> list[float]:
    top = _snap(high, step)
    ratios = {_snap(r, step) for r in PROBE_RATIOS if r <= top} | {top}
    return sorted(r for r in ratios if r > 0)


def probe_choices(
    space: SearchSpace, model_layers: Sequence[str], *, teacher: bool
) -> dict[str, dict[str, list[float]]]:
    """What is probed for a model with ``model_layers``: ``{"bits": {layer: widths},
    "prune": {layer: ratios}, "channels": {group root: ratios}}`` (channels: teacher only)."""
    s = space.settings
    layers = [n for n in model_layers if n in set(space.layers)]
    bits = {n: [float(b) for b in space.bits_choices(n) if b <= 8] for n in layers}
    prune = {n: _probe_ratios(s.layer_prune_max.get(n, s.prune_max), s.prune_step) for n in layers}
    channels = {
        r: _probe_ratios(s.layer_channels_max.get(r, s.channels_max), s.channels_step)
        for r in (space.channel_roots if teacher else [])
    }
    return {
        "bits": {n: v for n, v in bits.items() if v},
        "prune": {n: v for n, v in prune.items() if v},
        "channels": {n: v for n, v in channels.items() if v},
    }


@overload
def sensitivity_tables(
    pool: StudentPool,
    space: SearchSpace,
    spec: StudySpec,
    models: Sequence[str] | None = None,
    *,
    skip_failed: Literal[False] = False,
) -> dict[str, SensitivityTable]: ...


@overload
def sensitivity_tables(
    pool: StudentPool,
    space: SearchSpace,
    spec: StudySpec,
    models: Sequence[str] | None = None,
    *,
    skip_failed: Literal[True],
) -> tuple[dict[str, SensitivityTable], dict[str, str]]: ...


def sensitivity_tables(
    pool: StudentPool,
    space: SearchSpace,
    spec: StudySpec,
    models: Sequence[str] | None = None,
    *,
    skip_failed: bool = False,
) -> dict[str, SensitivityTable] | tuple[dict[str, SensitivityTable], dict[str, str]]:
    """The sensitivity table of each of ``models`` (default: every model of ``space``),
    measured once into ``pool``'s cache folder and read back afterwards.

    ``space`` is the study's whole space (before any space pruning), so the probes, and the
    cached file, are the same whoever asks. With ``skip_failed``, a model that cannot be
    distilled or probed (a diverging distillation, a broken custom student) is left out and
    ``(tables, {model: reason})`` is returned; otherwise the error propagates.
    """
    tables: dict[str, SensitivityTable] = {}
    failed: dict[str, str] = {}
    with computing():  # distilling and probing: no other frontier worker times meanwhile
        for model in models if models is not None else space.students:
            try:
                tables[model] = _table(pool, space, spec, model)
            except Exception as exc:
                if not skip_failed:
                    raise
                failed[model] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return (tables, failed) if skip_failed else tables


def _table(pool: StudentPool, space: SearchSpace, spec: StudySpec, model: str) -> SensitivityTable:
    """One model's table, from the cache or measured into it."""
    settings = spec.sensitivity
    granularity = space.settings.granularity[0]
    importance = space.settings.channel_importance
    net = pool.get(model)  # a student is distilled here the first time
    choices = probe_choices(space, list(compressible_layers(net)), teacher=model == TEACHER)
    bits = {n: [int(b) for b in v] for n, v in choices["bits"].items()}
    name = table_filename(
        model,
        settings,
        weights_fingerprint(net),
        bits=bits,
        prune_ratios=choices["prune"],
        channel_ratios=choices["channels"],
        granularity=granularity,
        importance=importance,
    )

    def compute() -> SensitivityTable:
        return measure_sensitivity(
            net,
            pool.task,
            name=model,
            bits=bits,
            prune_ratios=choices["prune"],
            channel_ratios=choices["channels"],
            granularity=granularity,
            settings=settings,
            importance=importance,
            study_rows=_study_rows(pool.task, spec),
            device=pool.device,
        )

    return cached_sensitivity(pool.cache.root / name, compute)


def _study_rows(task: Task, spec: StudySpec) -> int:
    """The rows the study's ``n_trials`` trials pass forward at least (for ``"auto"``)."""
    return study_forward_rows(
        spec.study.n_trials,
        val_rows=len(task.val),
        train_rows=len(task.train),
        epochs=spec.finetune.epochs,
    )


def pruned_space(pool: StudentPool, space: SearchSpace, spec: StudySpec) -> SearchSpace:
    """``space`` without the per-layer bit widths and pruning ratios that the teacher's
    sensitivity shows cannot be on the front: one layer alone at that width (or ratio) loses
    more than ``budget.max_accuracy_drop``
    (see :func:`spaces.sensitivity.restricted_space`). The same on every worker: the table is
    read from the cache."""
    drop = spec.budget.max_accuracy_drop
    if drop is None:  # the study file's check refuses prune_space without a budget
        return space
    table = sensitivity_tables(pool, space, spec, [TEACHER])[TEACHER]
    settings = restricted_space(space.settings, table, drop / 100)
    return SearchSpace(space.layers, pool.names, settings, space.channel_roots, space.head_modules)
