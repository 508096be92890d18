"""Two Ray nodes on this machine run one study in PostgreSQL, and one node is lost mid-run.

A head and a second node, each a ``ray start`` process with its own temporary folder and one
CPU, listening on 127.0.0.1 only, run the study through ``frontier run --backend ray
--ray-address``: the README's multi-node recipe, on one machine. The second node's workers hold
a trial on request (:mod:`tests.search.held_task`); the test then SIGKILLs every process of
that node. The study must still reach its trial count, keep every finished trial as it was
(none lost, none run again), and fail the held trial and run it again, with the same
parameters, on the head.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from search.retry import RETRY_OF_ATTR
from search.storage import normalise_url
from tests.search._cluster import kill, load, start_cli, wait_for, warm_cache
from tests.search._ray_nodes import (
    RayNode,
    alive,
    cluster_env,
    free_port,
    is_loopback,
    listening,
    process_tree,
    start_head,
    start_node,
)
from tests.search.held_task import HOLD_ENV
from tests.studyfile import write_study

# enough that, on a loaded machine, the head alone does not finish them before the second node
# has finished one and started another (with 10, the study once ended before the hold took)
N_TRIALS = 24


def _trials(url: str) -> list[FrozenTrial]:
    return load(url, "twonode").get_trials(deepcopy=False)


def _finished_by(engine: sa.engine.Engine) -> set[int]:
    """The processes (pids) that finished trials so far, read with plain SQL: opening the study
    in Optuna while ``frontier run`` creates it could race it to create the tables."""
    query = sa.text(
        "SELECT a.value_json FROM trials t JOIN trial_user_attributes a "
        "ON a.trial_id = t.trial_id AND a.key = 'worker' WHERE t.state = 'COMPLETE'"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).fetchall()
    except sa.exc.ProgrammingError:  # no tables yet
        return set()
    return {int(json.loads(worker).rsplit(":", 1)[1]) for (worker,) in rows}


def _pid(trial: FrozenTrial) -> int | None:
    """The process that ran a finished trial (its ``worker`` attribute, ``host:pid``)."""
    worker = str(trial.user_attrs.get("worker", ""))
    return int(worker.rsplit(":", 1)[1]) if ":" in worker else None


def _node_pids(hold: Path) -> set[int]:
    folder = hold / "pids"
    return {int(p.name) for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture()
def ray_dir() -> Iterator[Path]:
    """A folder for the nodes' temporary folders: short, as Ray's socket paths must be."""
    folder = Path(tempfile.mkdtemp(prefix="frontier-ray-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_study_on_two_ray_nodes_survives_losing_one(
    tmp_path: Path, ray_dir: Path, postgres_url: str, warm_weights: Path
) -> None:
    hold = tmp_path / "hold"
    env = cluster_env(ray_dir)
    address = f"127.0.0.1:{free_port()}"
    study_file = write_study(
        tmp_path,
        study={"name": "twonode", "n_trials": N_TRIALS, "sampler": "random"},
        task={"name": None, "factory": "tests.search.held_task:digits_cnn_held"},
        early_stopping={"enabled": False},  # every trial a COMPLETE one
    )
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    nodes: list[RayNode] = []
    pids: list[int] = []  # every process of the nodes seen
    run: subprocess.Popen[bytes] | None = None
    try:
        head = start_head(ray_dir, env, port=int(address.rsplit(":", 1)[1]), cpus=1)
        nodes.append(head)
        wait_for(head.started, 120, "the Ray head")
        node = start_node(ray_dir, {**env, HOLD_ENV: str(hold)}, address=address, cpus=1)
        nodes.append(node)
        wait_for(node.started, 120, "the second Ray node")
        run = start_cli(
            "run", str(study_file), "--backend", "ray", "--ray-address", address,
            "--workers", "2", "--storage", postgres_url, "--out", str(out), "--no-progress",
            log=tmp_path / "run.log", env=env,
        )  # fmt: skip

        def node_finished_a_trial() -> bool:
            assert run is not None and run.poll() is None, _log(tmp_path)
            return bool(_finished_by(engine) & _node_pids(hold))

        engine = sa.create_engine(normalise_url(postgres_url))
        try:
            wait_for(node_finished_a_trial, 240, "a trial finished on the second node")
        finally:
            engine.dispose()
        (hold / "hold").touch()

        def node_holds_a_trial() -> bool:
            assert run is not None and run.poll() is None, _log(tmp_path)
            return (hold / "held").exists()

        wait_for(node_holds_a_trial, 240, "a trial held on the second node")

        # the cluster listens on 127.0.0.1 only: GCS server, raylets, agents, workers, and
        # the driver (frontier run)
        pids += head.pids() + node.pids()
        sockets = listening([*pids, *process_tree(run.pid)])
        assert {p for p, *_ in sockets} & set(node.pids()), sockets
        assert {p for p, *_ in sockets} & set(process_tree(run.pid)), sockets
        assert all(is_loopback(ip) for _, ip, _ in sockets), sockets

        before = {t.number: t for t in _trials(postgres_url)}
        node_pids = _node_pids(hold)  # its workers
        lost_pids = node.pids()
        node.kill()
        wait_for(lambda: not alive(lost_pids), 60, "the second node's processes to end")
        assert run.wait(timeout=300) == 0, _log(tmp_path)
    finally:
        if run is not None:
            kill(run)
            run.wait(timeout=60)
        pids += [p for n in nodes if n.proc.poll() is None for p in n.pids()]
        for n in nodes:
            n.kill()
    wait_for(lambda: not alive(pids), 60, "every process of the test's Ray nodes to end")

    trials = _trials(postgres_url)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if RETRY_OF_ATTR in t.user_attrs]
    assert len(finished) == N_TRIALS and len(trials) == N_TRIALS + 1, _states(trials)

    # the trial held on the lost node failed, and its retry ran with the same parameters
    assert len(failed) == 1 and len(retries) == 1, _states(trials)
    lost, retry = failed[0], retries[0]
    assert before[lost.number].state == TrialState.RUNNING
    assert lost.user_attrs["fail_reason"].startswith("worker lost"), lost.user_attrs
    assert retry.user_attrs[RETRY_OF_ATTR] == lost.number
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert retry.user_attrs["config"] == lost.user_attrs["config"]
    assert _pid(retry) not in node_pids  # on the head: the second node is gone

    # every trial finished before the loss is as it was (none lost, none run again), among
    # them at least one from the lost node
    done_before = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    assert any(_pid(t) in node_pids for t in done_before.values())
    after = {t.number: t for t in trials}
    for number, t in done_before.items():
        assert after[number].state == TrialState.COMPLETE
        assert after[number].params == t.params
        assert after[number].datetime_complete == t.datetime_complete
        assert after[number].user_attrs["worker"] == t.user_attrs["worker"]


def _states(trials: list[FrozenTrial]) -> list[tuple[int, str, Any]]:
    return [(t.number, t.state.name, t.user_attrs.get(RETRY_OF_ATTR)) for t in trials]


def _log(tmp_path: Path) -> str:
    return (tmp_path / "run.log").read_text(errors="replace")[-4000:]
