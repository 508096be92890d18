"""After a predicted-latency search: time the front's candidates for real.

The search ranked candidates by predicted latency (:mod:`evaluators.latency`); the front it
found is rebuilt here, candidate by candidate, and timed as :class:`LatencyEvaluator` times
every candidate in a measured study, with ``quiet = true`` (only in quiet moments of the
machine, as the table's entries were timed). A finished Optuna trial cannot take new user
attributes, so the timings are stored as one study user attribute, ``latency_measured``
(``{trial number: {latency_measured_ms, latency_p90_ms, latency_cv, latency_error}}``),
which the result tables merge into the trials' rows. Running it again times only the
front points not timed yet.
"""

from __future__ import annotations

from dataclasses import replace

import optuna

from evaluators import LatencyEvaluator
from search.driver import config_of
from search.objective import StudyContext
from search.results import MEASURED_LATENCY_ATTR, trials_frame
from spaces import FinetuneSettings, compress


def measure_front_latency(ctx: StudyContext, study: optuna.Study) -> dict[str, dict[str, float]]:
    """Time every front trial not timed yet; returns the study's stored timings."""
    stored: dict[str, dict[str, float]] = dict(study.user_attrs.get(MEASURED_LATENCY_ATTR, {}))
    front = trials_frame(study)
    numbers = [int(n) for n in front.loc[front["front"], "trial"] if str(int(n)) not in stored]
    if not numbers:
        return stored
    # timed in quiet moments of the machine, as the table behind the prediction was
    timer = LatencyEvaluator(ctx.task, replace(ctx.spec.latency, quiet=True))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in numbers:
        trial = trials[number]
        # operators do not depend on trained values: rebuild without recovery fine-tuning
        candidate = compress(
            ctx.pool,
            config_of(trial, ctx.space),
            finetune=FinetuneSettings(epochs=0),
            seed=ctx.spec.study.seed + number,
            importance=ctx.spec.space.channel_importance,
            act_calibration=ctx.spec.space.act_calibration,
        )
        figures = timer.evaluate(candidate)
        predicted = float(trial.user_attrs.get("latency_predicted_ms", float("nan")))
        stored[str(number)] = {
            "latency_measured_ms": figures["latency_ms"],
            "latency_p90_ms": figures["latency_p90_ms"],
            "latency_cv": figures["latency_cv"],
            "latency_error": predicted / figures["latency_ms"] - 1.0,
        }
    study.set_user_attr(MEASURED_LATENCY_ATTR, stored)
    return stored
