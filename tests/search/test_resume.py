"""Resume after anything: a killed driver, Ctrl-C; nothing finished is lost or run again."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from tests.conftest import run_cli
from tests.search._cluster import kill, load, start_cli, wait_for, warm_cache
from tests.studyfile import write_study

NO_EARLY_STOP = {"enabled": False}


def _complete_and_running(db: Path, complete: int) -> bool:
    """``complete`` trials done and the next one fine-tuning (its configuration chosen)."""
    if not db.exists():
        return False
    query = (
        "SELECT t.number, t.state, EXISTS (SELECT 1 FROM trial_user_attributes a "
        "WHERE a.trial_id = t.trial_id AND a.key = 'config') FROM trials t ORDER BY t.number"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(query).fetchall()
    except sqlite3.Error:
        return False
    done = sum(state == "COMPLETE" for _, state, _ in rows)
    running = [n for n, state, chosen in rows if state == "RUNNING" and chosen and n >= 1]
    return done >= complete and bool(running)


def _cache_state(out: Path) -> dict[str, float]:
    return {f.name: f.stat().st_mtime for f in (out / "cache").glob("*.safetensors")}


@pytest.mark.slow
def test_driver_killed_mid_trial_resumes_without_losing_or_rerunning_trials(
    tmp_path: Path, warm_weights: Path
) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "killed", "n_trials": 4},
        finetune={"epochs": 40},
        early_stopping=NO_EARLY_STOP,
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    cache_before = _cache_state(out)
    args = ("run", str(study_file), "--out", str(out), "--no-progress")
    driver = start_cli(*args, log=tmp_path / "driver.log")
    wait_for(lambda: _complete_and_running(out / "study.db", 2), 180, "2 finished trials")
    kill(driver)  # SIGKILL: no cleanup at all
    assert driver.wait(timeout=30) == -signal.SIGKILL

    url = f"sqlite:///{out / 'study.db'}"
    before = load(url, "killed").get_trials()
    finished = {t.number: t for t in before if t.state == TrialState.COMPLETE}
    victim = next(t for t in before if t.state == TrialState.RUNNING)
    assert len(finished) >= 2

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr

    after = load(url, "killed").get_trials()
    for number, t in finished.items():  # every earlier finished trial intact
        same = after[number]
        assert same.state == TrialState.COMPLETE
        assert same.values == t.values and same.params == t.params
        assert same.datetime_complete == t.datetime_complete
        assert same.user_attrs == t.user_attrs
    # none run again: no later trial has the parameters of an earlier finished one
    later = [t for t in after if t.number not in finished and t.number != victim.number]
    assert not [t for t in later if t.params in [f.params for f in finished.values()]]
    # the trial that was running failed, and ran again with the same parameters
    assert after[victim.number].state == TrialState.FAIL
    assert "worker lost: process" in after[victim.number].user_attrs["fail_reason"]
    retry = [t for t in after if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == victim.params
    # the study holds its total; the failed attempt is not counted
    assert sum(t.state == TrialState.COMPLETE for t in after) == 4
    # the teacher and student caches were reused, not trained again
    assert _cache_state(out) == cache_before
    trials = pd.read_csv(out / "trials.csv")
    assert trials.loc[trials["trial"] == retry[0].number, "retry_of"].item() == victim.number


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_saves_outputs_and_the_next_run_retries(
    tmp_path: Path, warm_weights: Path
) -> None:
    study_file = write_study(
        tmp_path,
        study={"name": "sigint", "n_trials": 3},
        finetune={"epochs": 40},
        early_stopping=NO_EARLY_STOP,
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    args = ("run", str(study_file), "--out", str(out), "--no-progress")
    log = tmp_path / "driver.log"
    driver = start_cli(*args, log=log)
    wait_for(lambda: _complete_and_running(out / "study.db", 1), 180, "a fine-tuning trial")
    kill(driver, signal.SIGINT)
    assert driver.wait(timeout=60) == 130, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    assert "interrupted; everything finished so far is saved" in text

    trials = pd.read_csv(out / "trials.csv")  # outputs written on the way out
    interrupted = trials[trials["fail_reason"].fillna("") == "interrupted (Ctrl-C)"]
    assert len(interrupted) == 1 and interrupted["state"].item() == "FAIL"
    queued = trials[trials["state"] == "WAITING"]
    assert interrupted["trial"].item() in queued["retry_of"].tolist()
    assert (out / "front.csv").exists() and (out / "front.png").exists()

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    final = pd.read_csv(out / "trials.csv")
    assert (final["state"] == "COMPLETE").sum() == 3
    number = interrupted["trial"].item()
    retry = final[final["retry_of"] == number]
    assert len(retry) == 1 and retry["state"].item() == "COMPLETE"
    params = [c for c in final.columns if c == "student" or c.startswith(("bits.", "prune."))]
    assert (
        retry[params]
        .reset_index(drop=True)
        .equals(final.loc[final["trial"] == number, params].reset_index(drop=True))
    )
