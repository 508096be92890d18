"""The Ray Tune backend: Ray runs trials in parallel, Optuna decides them.

This is the only module that imports ray (besides :mod:`search.ray_node`, the ``ray start`` of
a node on 127.0.0.1; :mod:`search.ray_startup` uses the ray imported here).
:class:`OptunaAskTell` is a Ray Tune searcher over the study's own Optuna storage: ``suggest``
claims a trial exactly as a local run does (dead workers' trials are queued again first, the
study stops at ``n_trials``, a lease and heartbeats mark it as held) and samples its
configuration; ``on_trial_complete`` tells the outcome record with the same function as the
local driver (:mod:`search.trial`). A Ray study and a local study are therefore the same kind
of study: same trials, same attributes, same outputs.

Trials run in :func:`trial_trainable`, a function trainable in this installed package (Ray
workers import it by name). Actors are reused across trials (``reuse_actors=True``), and each
worker process takes the driver's `StudyContext` from Ray's object store once (see
:mod:`search.ray_startup`), or builds its own when it cannot: the teacher and students then
come from the study's weight cache, created once under a file lock. Each trial gets
``ray.cpus_per_trial`` CPUs and torch uses as many threads.

A local Ray is started with the dashboard off and listens on 127.0.0.1 only: Ray binds its GCS
server, raylet, workers and agents to the node's IP address, which it looks up on the network
unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` when ray is imported (then the node is
127.0.0.1; Ray 2.60 rewrites a ``127.0.0.1`` given to ``ray.init`` to the machine's address).
This module imports ray with that variable set, and removes it again at once (it is read at
import; a shell or process that runs ``ray start --address`` must not inherit it), unless
:func:`search.backends.importing_ray_to_join` imports it to join a cluster, or ray or the
variable were there already.

With Ray >= 2.60 a local Ray uses token authentication (a token is created in
``~/.ray/auth_token`` when none exists). To join a cluster (``--ray-address``), the token of
that cluster must be in ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN`` on every machine
(see the README's multi-node recipe).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

# before ray.tune is imported: no per-trial result files (the Optuna storage keeps results),
# the quiet reporter, and frontier's own Ctrl-C handling
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# Tune's experiment checkpoint (every trial's state, pickled) is never read back: the study's
# storage is the record and `frontier run` resumes from it. Tune's "auto" period spends about
# 5% of the driver's time on it; once a minute costs nothing measurable.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "60")


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


# Ray turns token authentication on for the local clusters it starts (and then writes the
# token to ~/.ray/auth_token), but a client joining a running cluster sends its token only in
# token mode; Ray reads the mode when it is imported.
if "RAY_AUTH_MODE" not in os.environ and _token_available():
    os.environ["RAY_AUTH_MODE"] = "token"

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _import_ray_on_loopback() -> None:
    """Import ray so that a local Ray it starts binds to 127.0.0.1 (see the module docstring)."""
    if "ray" in sys.modules or LOOPBACK_ENV in os.environ:
        return
    os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray  # noqa: F401
    finally:
        del os.environ[LOOPBACK_ENV]


_import_ray_on_loopback()

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402
from ray.tune.stopper import Stopper  # noqa: E402

from search.ray_startup import SharedContext, finish_start, share_context, worker_context  # noqa: E402

# Everything else is imported where it is used: Tune drops a trial actor that is still
# starting when another actor becomes free, so an actor must start in a second or two (this
# module is imported to create it); the heavy imports (torch, ...) happen in its first trial.
if TYPE_CHECKING:
    import optuna

    from search.backends import RaySettings
    from search.driver import RunSummary
    from search.objective import StudyContext

log = logging.getLogger("frontier")

# --- worker side -------------------------------------------------------------------------


def trial_trainable(config: dict[str, Any], context: SharedContext | None = None) -> None:
    """Ray Tune trainable: run one trial (:func:`search.trial.run_trial`) and report its
    outcome record as one result. ``context``: the driver's study context, shipped once
    (:mod:`search.ray_startup`).

    Whatever the candidate does (finish, stop early, fail) is reported as data; an exception
    that escapes (a lost worker) is for the searcher to fail and queue again.
    """
    import torch

    from search import leases
    from search.outcome import TrialOutcome
    from search.trial import TrialJob, run_trial

    job = config["frontier"]
    try:
        # inside the try: a worker that cannot build the study (a missing cache folder on a
        # node, say) reports why instead of dying as a "lost worker"
        ctx = worker_context(job, context)
        torch.set_num_threads(int(job["cpus_per_trial"]))
        outcome = run_trial(ctx, TrialJob.from_json(job["trial"]))
    except Exception as exc:
        outcome = TrialOutcome.failed(f"{type(exc).__name__}: {exc}".strip())
    record = outcome.to_json()
    record["worker"] = leases.Worker.current().label
    tune.report({"frontier": json.dumps(record)})


# --- driver side -------------------------------------------------------------------------


class OptunaAskTell(Searcher):
    """A Ray Tune searcher that asks and tells the frontier study in its Optuna storage."""

    def __init__(
        self,
        study: optuna.Study,
        ctx: StudyContext,
        job: Mapping[str, Any],
        *,
        n_trials: int,
        deadline: float | None,
        progress: Callable[[optuna.Study], None] | None = None,
    ) -> None:
        from search.keepalive import Keepalive

        super().__init__()
        self.study = study
        self.ctx = ctx
        self.job = dict(job)
        self.n_trials = n_trials
        self.deadline = deadline
        self.progress = progress
        self.keepalive = Keepalive(study)
        self.live: dict[str, optuna.Trial] = {}
        self.ran = 0
        self.interrupted = False

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True  # the search space is the study's; Tune's param_space stays empty

    def _done(self) -> str | None:
        return None if self.live else Searcher.FINISHED

    def suggest(self, trial_id: str) -> Any:  # a config, None (not now) or FINISHED
        from search import leases
        from search.trial import prepare

        if self.interrupted or (self.deadline is not None and time.monotonic() >= self.deadline):
            return self._done()
        claimed = leases.claim(self.study, self.n_trials)
        trial = claimed.trial
        if trial is None:
            return self._done()
        self.keepalive.hold(trial, beat=False)
        job = prepare(self.study, trial, self.ctx, claimed.trials)
        if job is None:  # told as failed
            self.keepalive.release(trial)
            return None
        self.live[trial_id] = trial
        return {"frontier": {**self.job, "trial": job.to_json()}}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        from search.outcome import TrialOutcome
        from search.trial import tell

        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        self.keepalive.release(trial)
        if error or not result or "frontier" not in result:
            reason = (
                "interrupted (Ctrl-C)"
                if self.interrupted
                else "worker lost: the Ray trial ended without a result"
            )
            self.release(trial, reason)
            return
        outcome = TrialOutcome.from_json(json.loads(result["frontier"]))
        tell(self.study, trial, outcome, self.ctx.spec.study.objectives)
        self.ran += 1
        if self.progress is not None:
            self.progress(self.study)

    def release(self, trial: optuna.Trial, reason: str) -> None:
        """Fail a trial that has no outcome and queue its parameters again."""
        from optuna.trial import TrialState

        from search import leases

        frozen = self.study._storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:
            leases.fail_and_retry(self.study, frozen, reason)

    def close(self) -> None:
        """Release every trial still held (after Tune returned) and stop the heartbeats."""
        for trial_id in list(self.live):
            trial = self.live.pop(trial_id)
            self.release(trial, "interrupted (Ctrl-C)" if self.interrupted else "run ended")
        self.keepalive.close()

    # The state lives in the Optuna storage: Tune's experiment snapshots (which pickle the
    # searcher) get nothing, and a frontier study is resumed by running it again, never by
    # Tuner.restore.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise RuntimeError("a frontier study resumes with `frontier run`, not Tuner.restore")


class _StopWhenInterrupted(Stopper):
    def __init__(self, searcher: OptunaAskTell) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.interrupted


def connect(settings: RaySettings, address: str | None) -> None:
    """Join the cluster at ``address``, or start a local Ray (dashboard off)."""
    if ray.is_initialized():
        return
    address = address or settings.address or None
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "include_dashboard": False,
    }
    if not address:
        # "local": always a new local cluster (token authentication on, from Ray 2.60), never
        # one that `ray start` left running on this machine
        ray.init(address="local", **common)
        return
    try:
        ray.init(address=address, **common)
    except Exception as exc:  # ConnectionError, AuthenticationError, ...
        from search.spec import StudyFileError

        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyFileError(
            f"Cannot join the Ray cluster at {address!r}: {detail}. Is it running, and is its "
            "token in ~/.ray/auth_token or RAY_AUTH_TOKEN?"
        ) from None


def run_ray(
    ctx: StudyContext,
    study: optuna.Study,
    *,
    n_trials: int,
    timeout_s: float | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: Callable[[optuna.Study], None] | None = None,
) -> RunSummary:
    """Run the study's missing trials on Ray workers (see the module docstring).

    Args:
        ctx: The driver's context (search space, settings; builds the teacher cache first).
        study: The study, opened with :func:`search.driver.open_study`.
        n_trials: The study's total.
        timeout_s: Stop starting trials after this long.
        address: Ray cluster to join; ``None`` uses ``ray.address`` or starts a local Ray.
        workers: Trials at once; ``None`` uses ``ray.workers`` (0: CPUs // cpus_per_trial).
        progress: Called with the study after each finished trial.
    """
    from search.driver import RunSummary
    from search.queue import prepare_queue

    settings = ctx.spec.ray
    # Ray first: its idle worker processes (where the trial actors will start) boot while the
    # driver queues the baselines and the warm starts (once per study)
    finish_start()  # a Ray started while the driver prepared (search.ray_startup.start_ray)
    connect(settings, address)
    prepare_queue(study, ctx, n_trials)
    # results live in the Optuna storage; Tune's analysis of its (absent) result files is noise
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    gpus = float(ray.cluster_resources().get("GPU", 0))
    concurrent = workers or settings.workers_for(cpus, gpus)
    job = {
        "spec": ctx.spec.to_data(),
        "results_dir": str(ctx.results_dir.resolve()),
        "cpus_per_trial": settings.cpus_per_trial,
    }
    start = time.monotonic()
    deadline = None if timeout_s is None else start + timeout_s
    searcher = OptunaAskTell(
        study, ctx, job, n_trials=n_trials, deadline=deadline, progress=progress
    )
    previous = _catch_sigint(searcher)
    try:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(trial_trainable, context=share_context(ctx)),
                settings.resources(),
            ),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,
                max_concurrent_trials=concurrent,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"frontier-{study.study_name}",
                storage_path=str((ctx.results_dir / "ray").resolve()),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                stop=_StopWhenInterrupted(searcher),
            ),
        )
        tuner.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
        searcher.close()
    return RunSummary(
        study=study,
        ran=searcher.ran,
        wall_s=time.monotonic() - start,
        interrupted=searcher.interrupted,
    )


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _catch_sigint(searcher: OptunaAskTell) -> Any:
    """Ctrl-C: stop suggesting and stop the running trials (they are queued again)."""
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        searcher.interrupted = True

    return signal.signal(signal.SIGINT, handler)
