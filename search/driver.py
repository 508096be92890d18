"""The Optuna driver: open or resume a study, enqueue baselines and warm starts, ask / evaluate /
tell."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from search import leases
from search.environment import LEGACY_SPEC_ATTR, SPEC_ATTR, record_study_info
from search.interrupts import CtrlC
from search.keepalive import Keepalive
from search.objective import StudyContext
from search.objective_names import (
    DEFAULT_OBJECTIVES,
    directions,
    recorded_objectives,
)
from search.queue import prepare_queue
from search.spec import StudyFileError, StudySpec
from search.storage import open_shared_study
from search.trial import prepare, run_trial, tell
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

    A storage URL is opened with heartbeats and created under a lock (see
    :mod:`search.storage`), so several processes may open one study at once. A new study
    records its settings, environment and ``results_dir`` as study user attributes (see
    :mod:`search.environment`), for reports of the storage alone.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opens = 0
    expected = directions(spec.study.objectives)
    try:
        if isinstance(storage, str):
            study, opens = open_shared_study(spec.study.name, storage, spec.storage, expected)
        else:
            study = optuna.create_study(
                study_name=spec.study.name,
                storage=storage,
                directions=expected,  # type: ignore[arg-type]
                load_if_exists=True,
            )
    except (
        ValueError,
        ImportError,
        OSError,
        optuna.exceptions.StorageInternalError,
        sqlalchemy.exc.SQLAlchemyError,
    ) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyFileError(f"Cannot open storage {storage!r}: {detail}") from None
    check_same_objectives(study, spec, storage)
    if [d.name.lower() for d in study.directions] != expected:
        raise StudyFileError(
            f"Study {spec.study.name!r} in {storage!r} was not created by frontier "
            "(its objectives differ); choose another study name or storage."
        )
    record_study_info(study, spec, results_dir)
    # workers opening one study get different seeds (7919: a prime, so offsets do not collide)
    offset = len(study.get_trials(deepcopy=False)) + 7919 * opens
    study.sampler = make_sampler(spec, offset=offset)
    return study


def check_same_objectives(
    study: optuna.Study, spec: StudySpec, storage: str | optuna.storages.BaseStorage
) -> None:
    """Refuse to continue a study with other objectives than it was created with.

    A study that recorded none but was made by an earlier release (it has settings or
    trials) optimised the three defaults; a study just created has recorded nothing yet.
    """
    recorded = recorded_objectives(study)
    attrs = study.user_attrs
    made = SPEC_ATTR in attrs or LEGACY_SPEC_ATTR in attrs
    if recorded is None and (made or study.get_trials(deepcopy=False)):
        recorded = DEFAULT_OBJECTIVES
    if recorded is not None and recorded != spec.study.objectives:
        raise StudyFileError(
            f"Study {spec.study.name!r} in {storage!r} optimises {list(recorded)}, but "
            f"'study.objectives' is {list(spec.study.objectives)}; set it back, or choose "
            "another study name or storage."
        )


def evaluate_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    ctx: StudyContext,
    trials: Sequence[FrozenTrial] | None = None,
) -> None:
    """Prepare, run and tell one claimed trial in this process (see :mod:`search.trial`);
    ``trials`` are the study's trials as claiming read them."""
    job = prepare(study, trial, ctx, trials)
    if job is not None:
        tell(study, trial, run_trial(ctx, job), ctx.spec.study.objectives)


def count_finished(study: optuna.Study) -> int:
    """Finished trials that count toward ``n_trials`` (failures queued again do not)."""
    return leases.count_finished(study.get_trials(deepcopy=False))


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
    """Run trials until the study holds ``n_trials`` or ``timeout_s`` passes.

    ``n_trials`` is the study's total, so running the same study again continues it: it
    adds only the trials still missing, and never re-runs a finished one. Several processes
    may run one study: each claims trials under a lock, so together they stop at exactly
    ``n_trials``. A trial whose worker died is failed and run again with the same
    parameters (see :mod:`search.leases`). Ctrl-C stops at once: the trial in flight is
    recorded as failed ("interrupted") and queued again for the next run; everything else
    is kept.
    """
    prepare_queue(study, ctx, n_trials)
    start = time.monotonic()
    ran = 0
    interrupted = False
    keepalive = Keepalive(study)
    trial: optuna.Trial | None = None
    with CtrlC() as ctrl_c:
        try:
            while True:
                if timeout_s is not None and time.monotonic() - start >= timeout_s:
                    break
                claimed = leases.claim(study, n_trials)
                trial = claimed.trial
                if trial is None:
                    break
                keepalive.hold(trial, beat=False)
                evaluate_trial(study, trial, ctx, claimed.trials)
                keepalive.release(trial)
                trial = None
                ran += 1
                if progress is not None:
                    progress(study)
        except KeyboardInterrupt:
            ctrl_c.handled()
            interrupted = True
            if trial is not None:
                release_interrupted(study, trial)
        finally:
            keepalive.close()
    interrupted = interrupted or ctrl_c.pressed
    return RunSummary(
        study=study, ran=ran, wall_s=time.monotonic() - start, interrupted=interrupted
    )


def release_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail a trial stopped by Ctrl-C and queue its parameters for the next run."""
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state == TrialState.RUNNING:
        leases.fail_and_retry(study, frozen, "interrupted (Ctrl-C)")


def config_of(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> CompressionConfig:
    """The configuration a stored trial evaluated."""
    if "config" in trial.user_attrs:
        return CompressionConfig.from_json(trial.user_attrs["config"])
    return space.config_from_params(trial.params)
