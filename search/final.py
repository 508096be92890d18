"""The final figures of a study: front and baselines re-timed side by side, and the test split.

While the search runs, each candidate is timed once, whenever its trial ran: the teacher first,
a front point an hour later on a machine that may have changed speed, and the best point is
the luckiest of many noisy timings. Those figures steer the search; they are not the ones to
quote. When a run ends (``frontier run``, local or Ray) and in ``report`` / ``select`` /
``export`` when they are missing, :func:`final_figures`:

- rebuilds the front points and the baselines (teacher, uniform int8/int4, students) from the
  storage and times them together with :func:`evaluators.latency.time_interleaved`
  (round-robin rounds, the study's runtime, threads and batch size, quiet timing);
- measures them on the test split (:mod:`search.testsplit`; reported, never ranked on).

A finished trial takes no new user attribute, so the figures are study user attributes:
:data:`~search.results.FINAL_ATTR` (``{trial: {final_latency_ms, final_latency_spread}}``),
the test store (:data:`~search.results.TEST_FIGURES_ATTR`), and :data:`FINAL_RUN_ATTR`
recording when and how the timing ran. :func:`search.results.trials_frame` merges them into
the trials' rows, so ``front.csv``, the report, ``select``, the knee and every ratio against
the teacher read them. They are timed again only when the front or the baselines changed
(every point of one timing is compared with the others of the same timing, so a new point
means timing them all again) or when asked to (``force``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from dataclasses import dataclass

import optuna

from evaluators.latency import (
    ROUNDS,
    computes,
    example_batch,
    machine_id,
    time_interleaved,
    timing_device,
)
from search.driver import config_of
from search.objective import StudyContext
from search.results import FINAL_ATTR, trials_frame
from search.stored import StoredStudy
from search.testsplit import HeldOutFigures, held_out_figures
from spaces import Compressed, FinetuneSettings, compress

log = logging.getLogger("frontier")

#: Study user attribute: when and how the final timing ran (settings, machine, trials).
FINAL_RUN_ATTR = "final_timing"


@dataclass(frozen=True)
class FinalFigures:
    """What :func:`final_figures` did.

    Attributes:
        trials: The front points and baselines the figures are for.
        timed: Whether they were timed now (``False``: the stored figures still held).
        failed: Trials that could not be rebuilt (no final latency for them).
        test: Their test-split figures.
    """

    trials: tuple[int, ...]
    timed: bool
    failed: tuple[int, ...]
    test: HeldOutFigures

    @property
    def note(self) -> str:
        """One sentence for the terminal."""
        how = "timed side by side now" if self.timed else "as timed at the end of the run"
        text = f"final latency of {len(self.trials)} front points and baselines: {how}"
        if self.failed:
            text += f"; not rebuilt: trial(s) {', '.join(map(str, self.failed))}"
        return text + "."


def final_trials(study: optuna.Study) -> list[int]:
    """The trials given final figures: the feasible front and the complete baselines."""
    df = trials_frame(study)
    if df.empty:
        return []
    done = df["state"] == "COMPLETE"
    wanted = df["front"].astype(bool) | (done & (df["baseline"].astype(str) != ""))
    return sorted(int(n) for n in df.loc[wanted, "trial"])


def missing_final(study: optuna.Study) -> list[int]:
    """Trials of :func:`final_trials` without a stored final latency."""
    stored = study.user_attrs.get(FINAL_ATTR)
    have = set(stored) if isinstance(stored, dict) else set()
    return [n for n in final_trials(study) if str(n) not in have]


@computes  # rebuilding candidates is compute; the timing inside takes the lock alone
def final_figures(
    stored: StoredStudy, *, rounds: int = ROUNDS, force: bool = False
) -> FinalFigures:
    """Give the front and the baselines their final figures (see the module docstring).

    Args:
        stored: The study, with its settings (to rebuild candidates).
        rounds: Interleaved rounds of the timing.
        force: Time them again although stored figures cover them.
    """
    study = stored.study
    numbers = final_trials(study)
    test = held_out_figures(stored, numbers)
    if not numbers or not (force or missing_final(study)) or stored.spec is None:
        return FinalFigures(tuple(numbers), False, (), test)
    ctx = stored.context()
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    models, failed = {}, []
    for n in numbers:
        try:
            models[str(n)] = timing_candidate(ctx, trials[n]).model
        except Exception as exc:  # a candidate that no longer builds keeps its search figure
            log.warning("trial %d: cannot rebuild it for the final timing: %s", n, exc)
            failed.append(n)
    settings = ctx.spec.latency
    batch = example_batch(ctx.task, settings.batch_size)
    device = ctx.latency_device
    timed = time_interleaved(models, batch, settings, rounds=rounds, quiet=True, device=device)
    figures = {
        name: {"final_latency_ms": t.latency_ms, "final_latency_spread": t.spread}
        for name, t in timed.items()
    }
    record = {
        "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_id(),
        "runtime": settings.runtime,
        "device": str(timing_device(settings.runtime, device)),
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "warmup": settings.warmup,
        "repeats_per_round": settings.repeats,
        "rounds": rounds,
        "quiet": True,
        "trials": sorted(int(n) for n in figures),
    }
    try:
        study.set_user_attr(FINAL_ATTR, figures)
        study.set_user_attr(FINAL_RUN_ATTR, record)
    except Exception as exc:  # a read-only storage: nothing to keep them in
        log.warning("cannot store the final figures in the study: %s", exc)
    return FinalFigures(tuple(numbers), True, tuple(failed), test)


def timing_candidate(ctx: StudyContext, trial: optuna.trial.FrozenTrial) -> Compressed:
    """``trial``'s candidate as it runs, built without recovery fine-tuning and with nearest
    rounding: fine-tuning and GPTQ change weight values, not the operators timed (as early
    stopping's rung 0 assumes), and GPTQ costs minutes on a large model."""
    return compress(
        ctx.pool,
        dataclasses.replace(config_of(trial, ctx.space), rounding="nearest"),
        finetune=FinetuneSettings(epochs=0),
        seed=ctx.spec.study.seed + trial.number,
        importance=ctx.spec.space.channel_importance,
        act_calibration=ctx.spec.space.act_calibration,
    )
