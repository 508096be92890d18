"""Test-split figures of chosen trials: stored by the run, or re-measured here.

The search scores candidates on the validation split; choosing among hundreds of them
overfits it, so reports and selection use the held-out test split. A trial's figures come
from its user attributes ``test_accuracy``, ``test_accuracy_low`` and ``test_accuracy_high``
when the run stored them; otherwise :func:`remeasure_test` rebuilds the candidate and
measures it (the only place that does so), and the result is remembered in the study's
``test_remeasured`` user attribute so later reports reuse it.
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
from search.results import TEST_COLUMNS
from search.stored import StoredStudy

log = logging.getLogger("frontier")


REMEASURED_ATTR = "test_remeasured"


def remeasure_test(ctx: StudyContext, trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """Rebuild ``trial``'s candidate and measure it on the test split (95% bootstrap)."""
    figures = TestSplitEvaluator(ctx.task).evaluate(rebuild(ctx, trial))
    return {c: figures[c] for c in TEST_COLUMNS}


@dataclass(frozen=True)
class HeldOutFigures:
    """Test-split figures of some trials.

    Attributes:
        frame: Indexed by trial number, columns :data:`TEST_COLUMNS` (NaN where unknown).
        stored: Trials whose figures the run stored.
        remeasured: Trials re-measured by :func:`remeasure_test` (now or earlier).
        missing: Trials without a test figure; callers fall back to validation accuracy.
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
            parts.append(f"{len(self.stored)} stored by the run")
        if self.remeasured:
            parts.append(
                f"{len(self.remeasured)} re-measured by rebuilding the candidate "
                "(same config and seed, artifact size checked)"
            )
        text = "Test accuracy (95% bootstrap interval): " + (", ".join(parts) or "none") + "."
        if self.missing:
            text += (
                f" No test figure for trial(s) {', '.join(map(str, self.missing))}: "
                "validation accuracy is used for them."
            )
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
            rows[n] = {c: float(cache[str(n)][c]) for c in TEST_COLUMNS}
            again.append(n)
        elif remeasure and trial.state == optuna.trial.TrialState.COMPLETE:
            try:
                rows[n] = remeasure_test(stored.context(), trial)
            except Exception as exc:  # a rebuild that fails leaves the point on validation
                log.warning("trial %d: cannot re-measure on the test split: %s", n, exc)
                missing.append(n)
                continue
            cache[str(n)] = rows[n]
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
