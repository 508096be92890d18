"""Who holds a running trial, noticing dead holders, and claiming the next trial.

Every worker (a ``frontier run`` process, or the driver of a Ray run) writes a *lease* on each
trial it holds: its machine, process id and process start time. Before it claims a trial, a
worker fails every running trial whose holder is dead, and queues that trial's parameters again
(a waiting trial, asked before any new one):

- holder on this machine (same boot and process namespace): its process is gone, or its pid now
  belongs to a younger process. Noticed at once, so ``kill -9`` then ``frontier run`` resumes
  without waiting.
- holder elsewhere, RDB storage (SQLite, PostgreSQL, ...): Optuna's heartbeat is older than
  ``storage.grace_period``.
- holder elsewhere, journal storage: frontier's own heartbeat time stamp on the trial is older
  than ``storage.grace_period`` (Optuna's journal storage has no heartbeats).

Trials whose holder died (and trials interrupted with Ctrl-C) are failed with their reason and
queued again with the same parameters, up to ``storage.max_retry`` times; a failed trial that was
queued again does not count toward ``n_trials`` (its retry does).

Claiming (:func:`claim`) happens under :func:`search.storage.study_lock`, so several
workers together stop at exactly ``n_trials`` trials.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.keepalive import BEAT
from search.retry import RETRY_OF_ATTR, RetryWithSameParams
from search.storage import StorageSettings, storage_kind, storage_of, study_lock
from search.writes import write_trial_attrs

log = logging.getLogger("frontier")

#: System attributes frontier keeps on trials.
LEASE = "frontier:lease"
#: User attributes people see (``trials.csv``): who ran a trial, which trial it retries.
WORKER_ATTR = "worker"

#: Study user attribute: the total number of trials the last run aimed at (``n_trials``).
TARGET_ATTR = "frontier.n_trials"

#: Trial states that count toward ``n_trials`` once finished.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: Seconds between two stale-heartbeat queries by one process's claims (each reads the whole
#: study twice; with two Ray workers on 2 CPUs, querying at every claim cost the driver 8% of
#: its CPU time at 200 trials, and it grows with the study).
RECOVERY_INTERVAL_S = 2.0
_last_recovery: dict[str, float] = {}
_clock = time.monotonic  # what the claims' interval is read on (tests set it)


@dataclass(frozen=True)
class Worker:
    """A process that can hold trials.

    Attributes:
        host: Host name, for people.
        machine: Boot id and pid namespace: two processes with the same value see each
            other's process table, so one can tell whether the other is alive.
        pid: Process id.
        started: Start time of the process (clock ticks since boot), so that a reused pid
            is not mistaken for the original process.
    """

    host: str
    machine: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> Worker:
        """This process."""
        return _current_worker(os.getpid())

    @property
    def label(self) -> str:
        """``host:pid``, the ``worker`` column of the result tables."""
        return f"{self.host}:{self.pid}"

    def visible(self) -> bool:
        """Whether this process can tell if ``self`` is alive (same machine and namespace)."""
        return bool(self.machine) and self.machine == Worker.current().machine

    def alive(self) -> bool:
        """Whether the process is still running (only meaningful when :meth:`visible`)."""
        started = _start_time(self.pid)
        if started is None:
            return _pid_exists(self.pid) if not Path("/proc").is_dir() else False
        return not self.started or started == self.started

    @classmethod
    def from_dict(cls, data: Any) -> Worker | None:
        try:
            return cls(
                host=str(data["host"]),
                machine=str(data["machine"]),
                pid=int(data["pid"]),
                started=str(data["started"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@functools.lru_cache(maxsize=4)
def _current_worker(pid: int) -> Worker:
    return Worker(
        host=socket.gethostname(), machine=_machine_id(), pid=pid, started=_start_time(pid) or ""
    )


def _machine_id() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""  # not Linux: liveness is left to heartbeats


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after it are space-separated
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- retries ------------------------------------------------------------------------------


def fail_and_retry(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Fail a running trial with ``reason`` and queue its parameters again.

    Returns False when the trial had already finished (another worker got there first).
    """
    storage = study._storage
    _, settings = storage_of(study)
    trial_id = trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason[:2000])
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    RetryWithSameParams(settings.max_retry, reason)(study, storage.get_trial(trial_id))
    return True


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that were queued again (they do not count toward n_trials)."""
    out: set[int] = set()
    for t in trials:
        out.update(int(n) for n in t.system_attrs.get("retry_history", []))
    return out


def count_finished(trials: Sequence[FrozenTrial]) -> int:
    """Finished trials that count toward ``n_trials``: failures queued again do not."""
    retried = retried_numbers(trials)
    return sum(1 for t in trials if t.state in FINISHED and t.number not in retried)


def record_target(study: optuna.Study, n_trials: int) -> None:
    """Remember the run's ``n_trials`` in the study, for ``frontier status`` elsewhere."""
    if study.user_attrs.get(TARGET_ATTR) != n_trials:
        study.set_user_attr(TARGET_ATTR, int(n_trials))


def count_claimed(trials: Sequence[FrozenTrial]) -> int:
    """Counted finished trials plus running ones."""
    return count_finished(trials) + sum(1 for t in trials if t.state == TrialState.RUNNING)


# --- leases, heartbeats, recovery ---------------------------------------------------------


def take_lease(
    study: optuna.Study,
    trial: optuna.Trial | FrozenTrial,
    worker: Worker,
    *,
    user_attrs: dict[str, Any] | None = None,
) -> None:
    """Mark ``trial`` as held by ``worker``, with its first heartbeat (one write, with
    ``user_attrs`` if given)."""
    lease = {**asdict(worker), "trial": trial.number}
    write_trial_attrs(
        study,
        trial,
        user_attrs=user_attrs,
        system_attrs={LEASE: lease, BEAT: time.time()},
        heartbeat=True,
    )


def holder_of(trial: FrozenTrial) -> Worker | None:
    """The worker holding a running trial (``None`` when it has no lease of its own)."""
    lease = trial.system_attrs.get(LEASE)
    if not isinstance(lease, dict) or lease.get("trial") != trial.number:
        # no lease yet, or one copied from the trial this one retries
        return None
    return Worker.from_dict(lease)


def stale_reason(trial: FrozenTrial, url: str | None, settings: StorageSettings) -> str | None:
    """Why a running trial's holder counts as dead, or ``None`` while it may be alive."""
    holder = holder_of(trial)
    if holder is None:
        return None
    if holder.visible():
        if holder.alive():
            return None
        return f"worker lost: process {holder.label} died while running this trial"
    if url is not None and storage_kind(url) == "journal":
        beat = trial.system_attrs.get(BEAT)
        if isinstance(beat, (int, float)) and time.time() - beat > settings.grace_period:
            return f"worker lost: no heartbeat from {holder.label} for {settings.grace_period}s"
    return None  # RDB storages: Optuna's heartbeats decide (see recover_stale_trials)


def recover_stale_trials(
    study: optuna.Study, trials: Sequence[FrozenTrial] | None = None, *, heartbeats: bool = True
) -> list[int]:
    """Fail every running trial whose holder is dead and queue it again; returns their numbers.

    ``trials`` is the study's trials read just before (read here when ``None``): when none of
    them is running there is nothing to recover, and the storage is not read again.
    ``heartbeats=False`` skips the RDB storages' stale-heartbeat query (and the storage reads
    it needs) unless ``trials`` already show a dead holder (:func:`stale_reason`).
    """
    url, settings = storage_of(study)
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    running = {t.number for t in trials if t.state == TrialState.RUNNING}
    if not running:
        return []
    if not heartbeats and not any(
        stale_reason(t, url, settings) for t in trials if t.state == TrialState.RUNNING
    ):
        return []
    # RDB storages: trials without a heartbeat for the grace period; Optuna fails them and
    # calls the storage's RetryWithSameParams callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = []
    for t in study.get_trials(deepcopy=False):
        if t.number not in running:
            continue
        if t.state == TrialState.FAIL:
            failed.append(t.number)  # by the heartbeat check just above (or its own worker)
            continue
        reason = stale_reason(t, url, settings) if t.state == TrialState.RUNNING else None
        if reason is not None and fail_and_retry(study, t, reason):
            failed.append(t.number)
    if failed:
        log.warning("trial(s) %s failed and queued again: their worker died", failed)
    return failed


@dataclass(frozen=True)
class Claim:
    """A claimed trial and the study's trials as they were just before it was asked.

    Attributes:
        trial: The trial to run, leased to this worker; ``None`` when the study is full.
        trials: The study's trials read while claiming (the new trial is not among them):
            pass them on (early stopping's rung table) instead of reading the storage again.
    """

    trial: optuna.Trial | None
    trials: list[FrozenTrial]


def claim(study: optuna.Study, n_trials: int) -> Claim:
    """Ask for the next trial unless the study already holds ``n_trials``; lease it.

    Dead workers' trials are failed and queued again first, so a retry is asked before any
    new trial. The storage's trials are read once (again only after a recovery). A holder
    dead on this machine (or silent, with journal storage) is seen at every claim; asking the
    storage for stale heartbeats reads the whole study twice, so a process asks at most every
    :data:`RECOVERY_INTERVAL_S` seconds, and always when the study looks full (a dead
    worker's trial must not end the run short of ``n_trials``).
    """
    url, _ = storage_of(study)
    worker = Worker.current()
    key = f"{url}|{study.study_name}"
    with study_lock(url or "", f"claim:{study.study_name}"):
        trials = study.get_trials(deepcopy=False)
        now = _clock()
        due = now - _last_recovery.get(key, -math.inf) >= RECOVERY_INTERVAL_S
        if due or count_claimed(trials) >= n_trials:
            _last_recovery[key] = now
            due = True
        if recover_stale_trials(study, trials, heartbeats=due):
            trials = study.get_trials(deepcopy=False)
        if count_claimed(trials) >= n_trials:
            return Claim(None, trials)
        trial = _ask(study, trials)
        take_lease(study, trial, worker, user_attrs={WORKER_ATTR: worker.label})
    return Claim(trial, trials)


def claim_trial(study: optuna.Study, n_trials: int) -> optuna.Trial | None:
    """The trial of :func:`claim` (``None`` means the study is full: finished plus running)."""
    return claim(study, n_trials).trial


def _ask(study: optuna.Study, trials: Sequence[FrozenTrial]) -> optuna.Trial:
    """``study.ask()`` over the trials just read: a queued retry first, then the oldest
    queued trial (baselines), else a new trial.

    ``study.ask()`` pops the oldest queued trial; a retry is queued last, so without the
    retry going first a study could reach ``n_trials`` with the retry still waiting. Popping
    from ``trials`` saves ``ask`` its own read of the queue; the state change is the same
    atomic compare-and-set ``ask`` uses, so two workers never start one queued trial
    (``trials`` may be a moment old: a trial queued meanwhile waits for the next claim).
    """
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    waiting.sort(key=lambda t: (RETRY_OF_ATTR not in t.user_attrs, t.number))
    storage = study._storage
    study._thread_local.cached_all_trials = None  # as ask: the trials changed
    for t in waiting:
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return optuna.Trial(study, storage.create_new_trial(study._study_id))
