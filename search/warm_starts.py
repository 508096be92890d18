"""Sensitivity-seeded warm starts: measure each model once, enqueue budgeted allocations.

Before the search samples anything, each model of the space (the teacher and every searched
student) is probed layer by layer (:mod:`search.sensitivities`, :mod:`spaces.sensitivity`:
each layer alone quantized at each bit width of the space and pruned at a few ratios,
everything else left as it is). The
tables are cached in the study's ``cache/`` folder (reused by every worker and on resume) and
stored in the study as the user attribute ``sensitivity``, so a report of the storage alone
shows them. From them and the cost model, :func:`search.allocation.warm_start_allocations`
computes per-layer allocations along a ladder of budgets; they are enqueued after the
baselines, once per study (the study attribute ``warm_starts`` lists their labels and marks
the work done, so a resumed or second worker enqueues nothing), each trial carrying its label
in the user attribute ``warm_start``. The sampler then continues from their results as from
any other history.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import optuna

from evaluators.latency import computing
from search.allocation import warm_start_allocations, warm_start_shares
from search.objective import StudyContext
from search.sensitivities import sensitivity_tables
from search.storage import storage_of, study_lock
from search.study_attrs import SENSITIVITY_ATTR
from spaces import FinetuneSettings, compress

log = logging.getLogger("frontier")

#: Study attribute: the labels of the warm starts enqueued (present once they were).
WARM_STARTS_ATTR = "warm_starts"
#: Study attribute: seconds the sensitivities took (students distilled for them included).
SENSITIVITY_SECONDS_ATTR = "sensitivity_s"
#: Study attribute: ``{model: reason}`` for models whose sensitivity could not be measured.
SENSITIVITY_FAILED_ATTR = "sensitivity_failed"
#: Trial attribute: the allocation a warm-start trial came from.
WARM_START_TRIAL_ATTR = "warm_start"


@dataclass(frozen=True)
class WarmStarts:
    """What :func:`enqueue_warm_starts` did.

    Attributes:
        labels: The labels enqueued (empty when nothing was, see ``reason``).
        seconds: Time spent on the sensitivities in this call (students distilled for them
            included; reading the cache costs next to nothing).
        reason: Why nothing was enqueued, or ``""``.
    """

    labels: tuple[str, ...] = ()
    seconds: float = 0.0
    reason: str = ""


def enqueue_warm_starts(
    study: optuna.Study, ctx: StudyContext, n_trials: int | None = None
) -> WarmStarts:
    """Measure (or read) the sensitivities and enqueue the allocations, once per study.

    With ``n_trials`` (the study's target), at most half the trials left after those already
    in the study are warm starts (the size ladder's first, then the int8 kernels', see
    ``[sensitivity] int8_warm_starts``): the sampler always gets the other half. A model whose
    sensitivity cannot be measured (its distillation diverged, say) gets no warm start and
    the study goes on; its trials fail with their reason as they would have.
    """
    settings = ctx.spec.sensitivity
    n, n_int8 = settings.warm_starts, settings.int8_warm_starts
    if not settings.enabled or n + n_int8 == 0:
        return WarmStarts(reason="turned off ([sensitivity] enabled / warm_starts)")
    if WARM_STARTS_ATTR in study.user_attrs:
        return WarmStarts(reason="already enqueued for this study")
    if n_trials is not None:  # the size ladder's first, then the int8 kernels'
        room = max(0, n_trials - len(study.get_trials(deepcopy=False))) // 2
        n = min(n, room)
        n_int8 = min(n_int8, room - n)
    shares = warm_start_shares(ctx.space.students, max(n, n_int8))
    models = [m for m, k in shares.items() if k > 0]
    t0 = time.perf_counter()
    tables, failed = sensitivity_tables(
        ctx.pool, ctx.full_space, ctx.spec, models, skip_failed=True
    )
    seconds = time.perf_counter() - t0
    for model, reason in failed.items():
        log.warning("no warm starts for %s: its sensitivity failed (%s)", model, reason)
    with computing():  # packing a reference configuration per model
        allocations = warm_start_allocations(
            tables,
            ctx.costs,
            ctx.space,
            ctx.spec.budget,
            ctx.spec.study.objectives,
            n,
            n_int8=n_int8,
            accuracy_floor=ctx.spec.budget.accuracy_floor(ctx.reference_accuracy),
            packed_size=lambda config: len(
                compress(ctx.pool, config, finetune=FinetuneSettings(epochs=0), seed=0).artifact
            ),
        )
    url, _ = storage_of(study)
    with study_lock(url or "", f"claim:{study.study_name}"):
        if WARM_STARTS_ATTR in study.user_attrs:  # another worker was first
            return WarmStarts(seconds=seconds, reason="already enqueued for this study")
        for a in allocations:
            study.enqueue_trial(
                ctx.space.params_from_config(a.config),
                user_attrs={WARM_START_TRIAL_ATTR: a.label},
            )
        study.set_user_attr(SENSITIVITY_ATTR, {m: t.to_dict() for m, t in tables.items()})
        study.set_user_attr(SENSITIVITY_SECONDS_ATTR, seconds)
        if failed:  # shown by the report beside the tables
            study.set_user_attr(SENSITIVITY_FAILED_ATTR, failed)
        study.set_user_attr(WARM_STARTS_ATTR, [a.label for a in allocations])
    log.info("enqueued %d warm starts from sensitivities (%.1fs)", len(allocations), seconds)
    return WarmStarts(labels=tuple(a.label for a in allocations), seconds=seconds)
