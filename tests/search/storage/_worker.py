"""A worker process of the storage contract tests.

``python -m tests.search.storage._worker ACTION URL NAME N_TRIALS`` opens the study ``NAME``
(single objective, maximised) and prints one JSON line:

- ``claim``: claims and tells trials until the study holds ``N_TRIALS``;
  prints ``{"opens": ..., "numbers": [...]}``.
- ``hold``: claims one trial, keeps its heartbeat, prints ``{"number": ..., "params": ...}``
  and dies at once holding it (no tell, no clean-up), as a killed worker does.
- ``lock``: prints ``{"waiting": true}``, takes :func:`search.storage.study_lock` ``NAME``,
  prints ``{"locked": true}``.
"""

from __future__ import annotations

import json
import os
import sys

from search.keepalive import Keepalive
from search.leases import claim_trial
from search.storage import StorageSettings, open_shared_study, study_lock

#: Short heartbeats, so that a dead remote worker is noticed within seconds.
SETTINGS = StorageSettings(heartbeat_interval=1, grace_period=2)


def _say(**message: object) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str]) -> None:
    action, url, name, n_trials = argv[0], argv[1], argv[2], int(argv[3])
    if action == "lock":
        _say(waiting=True)
        with study_lock(url, name):
            _say(locked=True)
        return
    study, opens = open_shared_study(name, url, SETTINGS, ["maximize"])
    if action == "claim":
        numbers = []
        while (trial := claim_trial(study, n_trials)) is not None:
            study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
            numbers.append(trial.number)
        _say(opens=opens, numbers=numbers)
    elif action == "hold":
        trial = claim_trial(study, n_trials)
        if trial is None:
            raise SystemExit("the study is full")
        trial.suggest_float("x", 0.0, 1.0)
        Keepalive(study).hold(trial)
        _say(number=trial.number, params=trial.params)
        os._exit(0)
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
