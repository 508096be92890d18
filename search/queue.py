"""What a study queues before its sampler proposes anything, once per study: the baselines
(teacher, uniform int8 / int4, each distilled student), then the sensitivity warm starts
(:mod:`search.warm_starts`); and what the report needs to know of each model's layers."""

from __future__ import annotations

import logging

import optuna

from search import leases
from search.families import STUDENT_LAYERS_ATTR, student_layers
from search.objective import StudyContext
from search.storage import storage_of, study_lock
from search.warm_starts import WarmStarts, enqueue_warm_starts
from spaces import TEACHER, SearchSpace

log = logging.getLogger("frontier")


def prepare_queue(study: optuna.Study, ctx: StudyContext, n_trials: int) -> WarmStarts:
    """Queue the baselines and then the warm starts (each once per study), record each
    model's layers and the study's target ``n_trials``; what the warm starts did."""
    url, _ = storage_of(study)
    with study_lock(url or "", f"claim:{study.study_name}"):
        enqueue_baselines(study, ctx.space)
        record_model_layers(study, ctx)
        leases.record_target(study, n_trials)
    return enqueue_warm_starts(study, ctx, n_trials)  # after the baselines


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


def record_model_layers(study: optuna.Study, ctx: StudyContext) -> None:
    """Each model's compressible layers, once per study: the report's technique families
    count only the settings a trial's model has (:mod:`search.families`)."""
    if STUDENT_LAYERS_ATTR not in study.user_attrs:
        models = [TEACHER, *ctx.space.students]
        study.set_user_attr(STUDENT_LAYERS_ATTR, student_layers(ctx.costs, models))
