"""The Optuna driver: open or resume a study, enqueue baselines, ask / evaluate / tell."""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search.environment import record_study_info
from search.objective import OBJECTIVES, StudyContext, TrialOutcome, evaluate_config
from search.spec import StudyFileError, StudySpec
from spaces import CompressionConfig, SearchSpace

log = logging.getLogger("frontier")

#: Trial states that count toward ``n_trials`` (a run stops when this many exist).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def default_results_dir(spec: StudySpec, spec_path: str | Path) -> Path:
    """``<folder of the study file>/results/<study name>``."""
    return Path(spec_path).resolve().parent / "results" / spec.study.name


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{results_dir.resolve() / 'study.db'}"


def make_sampler(spec: StudySpec, *, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``seed + offset``.

    The offset (the number of trials already stored) keeps a resumed run repeatable without
    replaying the random proposals of the first run.
    """
    seed = spec.study.seed + offset
    if spec.study.sampler == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=10, constant_liar=True
        )
    if spec.study.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(
    spec: StudySpec,
    storage: str | optuna.storages.BaseStorage,
    *,
    results_dir: str | Path | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists (resume), with its sampler.

    A new study records its settings, environment and ``results_dir`` as study user
    attributes (see :mod:`search.environment`), for reports of the storage alone.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=spec.study.name,
            storage=storage,
            directions=[d for _, d in OBJECTIVES],  # type: ignore[misc]
            load_if_exists=True,
        )
    except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as exc:
        raise StudyFileError(f"Cannot open storage {storage!r}: {exc}") from None
    expected = [d for _, d in OBJECTIVES]
    if [d.name.lower() for d in study.directions] != expected:
        raise StudyFileError(
            f"Study {spec.study.name!r} in {storage!r} was not created by frontier "
            "(its objectives differ); choose another study name or storage."
        )
    record_study_info(study, spec, results_dir)
    study.sampler = make_sampler(spec, offset=len(study.get_trials(deepcopy=False)))
    return study


def enqueue_baselines(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Queue the teacher, the uniform 8-/4-bit configurations and the uncompressed distilled
    students first, once per study."""
    if any("baseline" in t.user_attrs for t in study.get_trials(deepcopy=False)):
        return []
    queued = []
    for name, config in {**space.baselines(), **space.student_baselines()}.items():
        if space.contains(config):
            study.enqueue_trial(space.params_from_config(config), user_attrs={"baseline": name})
            queued.append(name)
        else:
            log.warning("baseline %s is outside the search space; not enqueued", name)
    return queued


def tell_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Record a measured candidate: figures as attributes, constraints, objective values."""
    for key, value in outcome.figures.items():
        trial.set_user_attr(key, value)
    if outcome.skipped:
        trial.set_user_attr("skipped", outcome.skipped)
    for key, value in outcome.constraints.items():
        trial.set_constraint(key, value)
    study.tell(trial, outcome.values)


def tell_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Record a candidate that failed (NaN, exception) with its reason; the study goes on."""
    trial.set_user_attr("fail_reason", reason[:2000])
    study.tell(trial, state=TrialState.FAIL)


def evaluate_trial(study: optuna.Study, trial: optuna.Trial, ctx: StudyContext) -> None:
    """Sample, evaluate and tell one trial; a failing candidate becomes a failed trial."""
    try:
        config = ctx.space.suggest(trial)
        trial.set_user_attr("config", config.to_json())
        outcome = evaluate_config(ctx, config, seed=ctx.spec.study.seed + trial.number)
        if not all(math.isfinite(v) for v in outcome.values):
            raise FloatingPointError(f"non-finite objective values {outcome.values}")
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        log.debug("trial %d failed:\n%s", trial.number, traceback.format_exc())
        tell_failure(study, trial, reason)
        return
    tell_outcome(study, trial, outcome)


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass(frozen=True)
class RunSummary:
    study: optuna.Study
    ran: int
    wall_s: float
    interrupted: bool


def run_study(
    ctx: StudyContext,
    study: optuna.Study,
    *,
    n_trials: int,
    timeout_s: float | None = None,
    progress: Any = None,
) -> RunSummary:
    """Run trials until the study holds ``n_trials`` finished ones or ``timeout_s`` passes.

    ``n_trials`` is the study's total, so running the same study again continues it: it
    adds only the trials still missing, and never re-runs a finished one. Ctrl-C stops after
    recording the trial in flight as failed ("interrupted"); everything else is kept.
    """
    enqueue_baselines(study, ctx.space)
    start = time.monotonic()
    ran = 0
    interrupted = False
    while count_finished(study) < n_trials:
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            break
        trial = study.ask()
        try:
            evaluate_trial(study, trial, ctx)
        except KeyboardInterrupt:
            tell_failure(study, trial, "interrupted (Ctrl-C)")
            interrupted = True
            break
        ran += 1
        if progress is not None:
            progress(study)
    return RunSummary(
        study=study, ran=ran, wall_s=time.monotonic() - start, interrupted=interrupted
    )


def config_of(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> CompressionConfig:
    """The configuration a stored trial evaluated."""
    if "config" in trial.user_attrs:
        return CompressionConfig.from_json(trial.user_attrs["config"])
    return space.config_from_params(trial.params)
