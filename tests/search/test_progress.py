"""The progress bar's figures (search.status.progress_of) agree with the result table."""

from __future__ import annotations

import math

import optuna

from search.driver import count_finished
from search.results import trials_frame
from search.status import progress_of


def test_progress_figures_match_the_result_table() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    cases = [  # accuracy, size constraint, state
        (0.91, -1.0, optuna.trial.TrialState.COMPLETE),
        (0.97, 2.0, optuna.trial.TrialState.COMPLETE),  # over budget: not feasible
        (0.95, 0.0, optuna.trial.TrialState.COMPLETE),
        (0.99, -1.0, optuna.trial.TrialState.PRUNED),
        (None, None, optuna.trial.TrialState.FAIL),
    ]
    for accuracy, constraint, state in cases:
        trial = study.ask()
        if constraint is not None:
            trial.set_constraint("size", constraint)
        if accuracy is None:
            study.tell(trial, state=state)
            continue
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("size_bytes", 100.0)
        trial.set_user_attr("latency_ms", 1.0)
        if state == optuna.trial.TrialState.PRUNED:
            study.tell(trial, state=state)
        else:
            study.tell(trial, [accuracy, 100.0, 1.0])
    progress = progress_of(study.get_trials(deepcopy=False))
    df = trials_frame(study)
    ok = df[(df["state"] == "COMPLETE") & df["feasible"].astype(bool)]
    assert progress.feasible == len(ok) == 2
    assert progress.best_accuracy == ok["accuracy"].max() == 0.95
    assert progress.finished == count_finished(study) == 5
    assert math.isnan(progress_of([]).best_accuracy)
