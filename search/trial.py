"""The one trial path: ask (a job), run (an outcome record that never raises), tell.

Both backends go through these three functions and nothing else:

- the local driver (:func:`search.driver.run_study`): ``claim`` -> :func:`prepare` ->
  :func:`run_trial` -> :func:`tell`, in one process;
- Ray (:mod:`search.ray_backend`): the driver's searcher claims and calls :func:`prepare`, the
  job travels as JSON to a worker that calls :func:`run_trial`, the outcome travels back as
  JSON and the driver calls :func:`tell`.

So a trial stores the same record whichever backend ran it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from evaluators.latency import MachineLock, machine_lock
from search.early_stopping import CandidateStopped, RungJudge, RungPoint, judge_for
from search.objective import StudyContext
from search.objective_names import study_objectives
from search.outcome import COMPLETE, FAILED, PRUNED, TrialOutcome
from search.staged import evaluate_candidate
from search.writes import finish_trial, params_in_one_write
from spaces import CompressionConfig

log = logging.getLogger("frontier")

#: The Optuna state of each outcome state.
_STATES = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}

#: Longest failure reason stored on a trial.
REASON_CHARS = 2000


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs to evaluate one trial: the configuration, the training seed and
    the early-stopping rung table (``None``: early stopping is off)."""

    number: int
    config: CompressionConfig
    seed: int
    rungs: tuple[RungPoint, ...] | None = None

    def judge(self, ctx: StudyContext) -> RungJudge | None:
        """The early-stopping judge over this job's rung table."""
        if self.rungs is None:
            return None
        return RungJudge(
            ctx.spec.early_stopping,
            ctx.spec.finetune.epochs,
            list(self.rungs),
            objectives=ctx.spec.study.objectives,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "config": self.config.to_json(),
            "seed": self.seed,
            "rungs": None if self.rungs is None else [p.to_json() for p in self.rungs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialJob:
        rungs = data.get("rungs")
        return cls(
            number=int(data["number"]),
            config=CompressionConfig.from_json(data["config"]),
            seed=int(data["seed"]),
            rungs=None if rungs is None else tuple(RungPoint.from_json(p) for p in rungs),
        )


def prepare(
    study: optuna.Study,
    trial: optuna.Trial,
    ctx: StudyContext,
    trials: Sequence[FrozenTrial] | None = None,
) -> TrialJob | None:
    """Sample a claimed trial's configuration and snapshot the rung table.

    ``trials`` are the study's trials as claiming read them (:func:`search.leases.claim`), so
    the storage is not read again; ``None`` reads them. The parameters and the configuration
    are written in one transaction. Returns ``None`` when sampling fails (the trial is then
    told as failed with its reason).
    """
    if trials is not None:
        # Optuna's per-trial cache of the study's trials (emptied by ``ask``, filled by the
        # sampler's first read): claiming's read stands in for it. A fresh read differs only
        # in this trial's own state, which the samplers' uses of the cache do not look at.
        study._thread_local.cached_all_trials = list(trials)
        _lie_only_among_others(study.sampler, trials, trial.number)
    try:
        with params_in_one_write(study, trial) as attrs:
            config = ctx.space.suggest(trial)
            attrs["config"] = config.to_json()
        judge = judge_for(
            ctx.spec.early_stopping,
            ctx.spec.finetune,
            trials if trials is not None else study.get_trials(deepcopy=False),
            objectives=ctx.spec.study.objectives,
        )
        rungs = None if judge is None else tuple(judge.table)
        return TrialJob(trial.number, config, ctx.spec.study.seed + trial.number, rungs)
    except Exception as exc:
        tell(study, trial, TrialOutcome.failed(_reason(exc)))
        return None


def _lie_only_among_others(
    sampler: optuna.samplers.BaseSampler, trials: Sequence[FrozenTrial], number: int
) -> None:
    """TPE's constant liar only while other trials run.

    The liar counts other workers' running trials as bad ones, and for that reads the
    storage afresh at every sample; with no other trial running it samples exactly what it
    samples without, from the cached trials.
    """
    if not isinstance(sampler, optuna.samplers.TPESampler):
        return
    wanted = sampler.__dict__.setdefault("_frontier_constant_liar", sampler._constant_liar)
    others = any(t.state == TrialState.RUNNING and t.number != number for t in trials)
    sampler._constant_liar = bool(wanted and others)


def run_trial(ctx: StudyContext, job: TrialJob) -> TrialOutcome:
    """Evaluate one job; never raises (but for KeyboardInterrupt).

    A candidate clearly dominated at a fine-tuning rung is a pruned outcome with its figures
    at that rung (see :mod:`search.early_stopping`); one that raises, or whose objective
    values are not finite, is a failed outcome with its reason.

    The evaluation computes under the machine's shared lock and times latency alone on the
    machine (:mod:`evaluators.latency.isolation`); the seconds the timing waited for the
    other workers are the figure ``latency_wait_s``.
    """
    lock = machine_lock()
    waited = lock.waited_s
    outcome = _evaluate(ctx, job, lock)
    outcome.figures["latency_wait_s"] = lock.waited_s - waited
    return outcome


def _evaluate(ctx: StudyContext, job: TrialJob, lock: MachineLock) -> TrialOutcome:
    try:
        with lock.computing():
            outcome = evaluate_candidate(ctx, job.config, seed=job.seed, judge=job.judge(ctx))
    except CandidateStopped as stop:
        constraints = ctx.spec.budget.constraints(stop.figures, ctx.reference_accuracy)
        return TrialOutcome(stop.figures, constraints, state=PRUNED, reason=stop.reason)
    except Exception as exc:
        log.debug("trial %d failed:\n%s", job.number, traceback.format_exc())
        return TrialOutcome.failed(_reason(exc))
    return outcome.checked(ctx.spec.study.objectives)


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: TrialOutcome,
    objectives: Sequence[str] | None = None,
) -> None:
    """Record an outcome in the study: figures as user attributes, constraints, then the
    objective values (complete), or the state with its reason (pruned, failed).

    ``objectives`` are the study's (``spec.study.objectives``); ``None`` reads them from the
    study (see :func:`search.objective_names.study_objectives`).
    """
    names = objectives if objectives is not None else study_objectives(study)
    outcome = outcome.checked(names)
    attrs: dict[str, Any] = dict(outcome.figures)
    if outcome.worker:
        attrs["worker"] = outcome.worker
    if outcome.skipped:
        attrs["skipped"] = outcome.skipped
    if outcome.state == PRUNED:
        attrs["prune_reason"] = outcome.reason
    elif outcome.state == FAILED:
        attrs["fail_reason"] = outcome.reason[:REASON_CHARS]
    finish_trial(
        study,
        trial,
        state=_STATES[outcome.state],
        values=outcome.values_for(names) if outcome.state == COMPLETE else None,
        user_attrs=attrs,
        constraints=outcome.constraints,
    )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()
