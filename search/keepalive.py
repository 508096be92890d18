"""Heartbeats of the trials a worker holds, kept fresh by a background thread.

RDB storages take Optuna's own heartbeats (:func:`heartbeat_enabled`); the others keep the
time of the last beat in the trial's system attribute :data:`BEAT`, which
:mod:`search.leases` reads to tell a silent worker from a live one.
"""

from __future__ import annotations

import logging
import threading
import time

import optuna
from optuna.trial import FrozenTrial

from search.storage import storage_of

log = logging.getLogger("frontier")

#: The system attribute holding a trial's last heartbeat (storages without Optuna's).
BEAT = "frontier:beat"


class Keepalive:
    """A background thread that keeps the heartbeats of the trials a worker holds fresh."""

    def __init__(self, study: optuna.Study) -> None:
        _, settings = storage_of(study)
        self.study = study
        self.interval = settings.heartbeat_interval
        self._held: dict[int, int] = {}  # trial id -> number
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frontier-heartbeat", daemon=True)
        self._thread.start()

    def hold(self, trial: optuna.Trial | FrozenTrial, *, beat: bool = True) -> None:
        """Keep ``trial``'s heartbeat fresh; ``beat=False``: its first one is already
        recorded (:func:`claim` records it with the lease)."""
        with self._lock:
            self._held[trial._trial_id] = trial.number
        if beat:
            self._beat(trial._trial_id)

    def release(self, trial: optuna.Trial | FrozenTrial) -> None:
        with self._lock:
            self._held.pop(trial._trial_id, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self._held)
            for trial_id in held:
                self._beat(trial_id)

    def _beat(self, trial_id: int) -> None:
        storage = self.study._storage
        try:
            if heartbeat_enabled(storage):
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            else:
                storage.set_trial_system_attr(trial_id, BEAT, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            self.release_id(trial_id)
        except Exception as exc:  # a missed beat is retried; the trial goes on
            log.debug("heartbeat of trial id %d failed: %s", trial_id, exc)

    def release_id(self, trial_id: int) -> None:
        with self._lock:
            self._held.pop(trial_id, None)


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """Whether the storage keeps Optuna heartbeats (RDB storages opened by frontier do)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None
