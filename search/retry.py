"""Queueing a failed trial's parameters again (the storage's stale-trial callback).

Apart from :mod:`search.leases` so that :mod:`search.storage` can hand it to Optuna's RDB
storage without importing the lease logic (which itself sits on the storage).
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("frontier")

#: User attribute people see (``trials.csv``): which trial a queued retry replaces.
RETRY_OF_ATTR = "retry_of"


class RetryWithSameParams:
    """Queue a failed trial's parameters again as a waiting trial (at most ``max_retry`` times).

    The new trial keeps the configuration, baseline name and warm-start label, records
    ``retry_of`` (the trial it replaces) and ``retry_reason``, and keeps Optuna's
    ``failed_trial`` / ``retry_history`` system attributes, as
    :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` does.
    """

    def __init__(self, max_retry: int, reason: str) -> None:
        self.max_retry = max_retry
        self.reason = reason

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            log.warning("trial %d failed; not queued again (max_retry reached)", trial.number)
            return
        kept = ("config", "baseline", "warm_start")
        keep = {k: v for k, v in trial.user_attrs.items() if k in kept}
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={
                    **keep,
                    RETRY_OF_ATTR: trial.number,
                    "retry_reason": trial.user_attrs.get("fail_reason", self.reason),
                },
                system_attrs={
                    "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                    "retry_history": history,
                    # an enqueued trial (a baseline) stopped before all its fixed parameters
                    # were suggested keeps them all
                    "fixed_params": {
                        **trial.system_attrs.get("fixed_params", {}),
                        **trial.params,
                    },
                },
            )
        )
