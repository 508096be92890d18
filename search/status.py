"""``frontier status``: where a study stands, read from its storage (any machine reaching it)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from search import leases
from search.leases import TARGET_ATTR
from search.objective_names import DEFAULT_OBJECTIVES, study_objectives
from search.quality import front_hypervolume, reference_text
from search.results import trials_frame
from search.spec import StudyFileError
from spaces.files import file_lock

#: Speed is measured over at most this many of the most recently finished trials.
RATE_WINDOW = 50


def outputs_lock(results_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise writing the output files of one results folder between processes."""
    return file_lock(results_dir / ".outputs.lock")


@dataclass(frozen=True)
class StudyStatus:
    """A study's state at one moment."""

    name: str
    states: dict[str, int]
    counted: int
    target: int | None
    feasible: int
    front: int
    hypervolume: float
    trials_per_min: float
    eta_s: float | None
    last_finished: dt.datetime | None
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    latency_wait: str = ""


def latency_wait_text(trials: pd.DataFrame) -> str:
    """How long the trials' latency timings waited to run alone on the machine (for the
    other workers' computing to pause, :mod:`evaluators.latency.isolation`): ``"12.3 s in
    all, median 0.41 s per trial (25 trials)"``; ``""`` when no trial recorded it."""
    if "latency_wait_s" not in trials.columns:
        return ""
    waits = pd.to_numeric(trials["latency_wait_s"], errors="coerce").dropna()
    if waits.empty:
        return ""
    return (
        f"{waits.sum():.1f} s in all, median {waits.median():.2f} s per trial ({len(waits)} trials)"
    )


def summarize(study: optuna.Study, target: int | None) -> StudyStatus:
    """Count trials, measure the front and the recent speed of a study."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name: 0 for s in TrialState}
    for t in trials:
        states[t.state.name] += 1
    counted = leases.count_finished(trials)
    objectives = study_objectives(study)
    df = trials_frame(study)
    done = sorted(t.datetime_complete for t in trials if t.datetime_complete is not None)
    recent = done[-RATE_WINDOW:]
    rate = math.nan
    if len(recent) >= 2 and recent[-1] > recent[0]:
        rate = 60 * (len(recent) - 1) / (recent[-1] - recent[0]).total_seconds()
    eta = None
    if target is not None and math.isfinite(rate) and rate > 0:
        eta = 60 * max(0, target - counted) / rate
    return StudyStatus(
        name=study.study_name,
        states={k: v for k, v in states.items() if v},
        counted=counted,
        target=target,
        feasible=int(df["feasible"].astype(bool).sum()) if len(df) else 0,
        front=int(df["front"].astype(bool).sum()) if len(df) else 0,
        hypervolume=front_hypervolume(df, objectives),
        trials_per_min=rate,
        eta_s=eta,
        last_finished=done[-1] if done else None,
        objectives=objectives,
        latency_wait=latency_wait_text(df),
    )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def render(status: StudyStatus) -> str:
    """Human-readable lines (the output of ``frontier status``)."""
    states = ", ".join(f"{n} {s.lower()}" for s, n in status.states.items()) or "none"
    target = f" of {status.target}" if status.target is not None else ""
    ref = reference_text(status.objectives)
    lines = [
        f"study: {status.name}",
        f"objectives: {', '.join(status.objectives)}",
        f"trials: {status.counted}{target} counted ({states})",
        f"feasible: {status.feasible}",
        f"front: {status.front} points",
        f"hypervolume: {status.hypervolume:.4f} (normalised to the teacher; reference {ref})",
    ]
    if math.isfinite(status.trials_per_min):
        lines.append(
            f"speed: {status.trials_per_min:.1f} trials/min "
            f"(last {RATE_WINDOW} finished trials at most)"
        )
    else:
        lines.append("speed: - (fewer than 2 finished trials)")
    if status.target is not None and status.counted >= status.target:
        lines.append("time left: none (the study holds its n_trials)")
    elif status.eta_s is not None:
        lines.append(f"time left: about {_duration(status.eta_s)} at that speed")
    else:
        lines.append("time left: unknown")
    if status.latency_wait:
        lines.append(f"latency wait (timing alone on the machine): {status.latency_wait}")
    if status.last_finished is not None:
        lines.append(f"last finished: {status.last_finished:%Y-%m-%d %H:%M:%S}")
    return "\n".join(lines)


def open_for_status(
    study: str | Path | None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: Path | None = None,
) -> tuple[optuna.Study, int | None]:
    """Load the study named as ``report``, ``select`` and ``export`` name one (a study file, a
    storage file, or ``storage`` and ``study_name``); never create.

    Returns:
        The study and the number of trials it should hold (``None`` when unknown).

    Raises:
        StudyFileError: the study cannot be named or opened.
    """
    from search.stored import open_stored

    if study is None and not storage:
        raise StudyFileError(
            "Name a study file or storage file, or --storage URL (and --study NAME) "
            "(e.g. frontier status --storage postgresql://host/db --study digits_cnn)."
        )
    ref = str(study) if study is not None else None
    opened = open_stored(ref, storage=storage, study_name=study_name, out=out)
    loaded = opened.study
    target = opened.spec.study.n_trials if opened.spec is not None else None
    stored = loaded.user_attrs.get(TARGET_ATTR)
    if isinstance(stored, int):
        target = stored
    return loaded, target


@dataclass(frozen=True)
class Progress:
    """What a run's progress bar shows after each trial.

    Attributes:
        finished: Finished trials that count toward ``n_trials``.
        feasible: Completed trials within every budget.
        best_accuracy: Highest validation accuracy among them (NaN when there is none).
    """

    finished: int
    feasible: int
    best_accuracy: float


def progress_of(trials: Sequence[optuna.trial.FrozenTrial]) -> Progress:
    """The progress bar's figures from the study's trials, without building the result table
    (``trials_frame`` after every trial cost about 4% of the default study's run)."""
    feasible = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())
    ]
    accuracies = [
        float(a) for t in feasible if isinstance(a := t.user_attrs.get("accuracy"), (int, float))
    ]
    return Progress(
        finished=leases.count_finished(trials),
        feasible=len(feasible),
        best_accuracy=max(accuracies, default=math.nan),
    )
