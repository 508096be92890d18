"""Test-split figures of the front and the baselines, measured after the search.

The search scores and chooses candidates on the validation split; choosing among hundreds of
them flatters that split, so the test split *reports* on the chosen points (with a 95%
bootstrap interval) and is never used to rank, filter or pick. No trial is measured on it while
the study runs: at the end of a run (:mod:`search.final`), or in ``report`` / ``select`` /
``export`` when figures are missing, :func:`remeasure_test` rebuilds a front point or a
baseline and measures it (the only place that does so); the figures are kept in the study's
``test_remeasured`` user attribute (:data:`search.results.TEST_FIGURES_ATTR`; a finished
trial takes no new user attribute), which the result tables merge into the trials' rows.
Trials of older releases that stored ``test_accuracy`` themselves keep their figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
import pandas as pd

from evaluators.holdout import TestSplitEvaluator
from search.objective import StudyContext
from search.rebuild import rebuild
from search.results import TEST_COLUMNS, TEST_FIGURES_ATTR
from search.stored import StoredStudy

log = logging.getLogger("frontier")


REMEASURED_ATTR = TEST_FIGURES_ATTR


def remeasure_test(ctx: StudyContext, trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """Rebuild ``trial``'s candidate and measure it on the test split (95% bootstrap):
    :data:`TEST_COLUMNS` and the task's extra metrics (``test_nn_agreement``, ...)."""
    figures = TestSplitEvaluator(ctx.task, device=ctx.device).evaluate(rebuild(ctx, trial))
    return {c: float(v) for c, v in figures.items() if c.startswith("test_")}


@dataclass(frozen=True)
class HeldOutFigures:
    """Test-split figures of some trials.

    Attributes:
        frame: Indexed by trial number, columns :data:`TEST_COLUMNS` (NaN where unknown).
        stored: Trials whose figures the trial itself stored (older releases).
        remeasured: Trials measured after the search by :func:`remeasure_test` (now or
            earlier).
        missing: Trials without a test figure (shown without one; nothing ranks on it).
    """

    frame: pd.DataFrame
    stored: tuple[int, ...] = ()
    remeasured: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()

    @property
    def note(self) -> str:
        """One sentence saying where the test figures come from."""
        parts = []
        if self.stored:
            parts.append(f"{len(self.stored)} stored with the trial")
        if self.remeasured:
            parts.append(
                f"{len(self.remeasured)} measured after the search by rebuilding the candidate "
                "(same config and seed, artifact size checked)"
            )
        text = (
            "Test accuracy (95% bootstrap interval; reported only, validation chooses): "
            + (", ".join(parts) or "none")
            + "."
        )
        if self.missing:
            text += f" No test figure for trial(s) {', '.join(map(str, self.missing))}."
        return text

    def value(self, trial: int) -> float:
        if trial in self.frame.index:
            return float(self.frame.loc[trial, "test_accuracy"])
        return math.nan


def held_out_figures(
    stored: StoredStudy, numbers: Iterable[int], *, remeasure: bool = True
) -> HeldOutFigures:
    """Test-split figures of the trials ``numbers`` (stored, cached, or re-measured)."""
    remeasure = remeasure and stored.spec is not None  # no settings: nothing to rebuild
    trials = {t.number: t for t in stored.study.get_trials(deepcopy=False)}
    cache = dict(stored.study.user_attrs.get(REMEASURED_ATTR, {}))
    rows: dict[int, dict[str, float]] = {}
    kept, again, missing = [], [], []
    new = False
    for n in sorted(set(numbers)):
        trial = trials[n]
        if isinstance(trial.user_attrs.get("test_accuracy"), (int, float)):
            rows[n] = {c: float(trial.user_attrs.get(c, math.nan)) for c in TEST_COLUMNS}
            kept.append(n)
        elif str(n) in cache:
            rows[n] = {c: float(cache[str(n)].get(c, math.nan)) for c in TEST_COLUMNS}
            again.append(n)
        elif remeasure and trial.state == optuna.trial.TrialState.COMPLETE:
            try:
                measured = remeasure_test(stored.context(), trial)
            except Exception as exc:  # a rebuild that fails leaves the point without one
                log.warning("trial %d: cannot re-measure on the test split: %s", n, exc)
                missing.append(n)
                continue
            cache[str(n)] = measured
            rows[n] = {c: measured.get(c, math.nan) for c in TEST_COLUMNS}
            again.append(n)
            new = True
        else:
            missing.append(n)
    if new:
        try:
            stored.study.set_user_attr(REMEASURED_ATTR, cache)
        except Exception as exc:  # a read-only storage: the figures are still used
            log.warning("cannot remember re-measured test figures in the study: %s", exc)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(TEST_COLUMNS))
    frame.index.name = "trial"
    return HeldOutFigures(frame, tuple(kept), tuple(again), tuple(missing))
