from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from evaluators import Task, WeightCache
from evaluators.tasks.digits import digits_cnn
from spaces import DistillationSettings, StudentPool

REPO = Path(__file__).resolve().parents[1]

# fixtures of the multi-process / cluster-storage tests (PostgreSQL database, warm caches)
pytest_plugins = ["tests.search._cluster", "tests.search._small_studies"]

torch.set_num_threads(1)
# latency lookup tables go to a throw-away folder, never to the user's cache
os.environ.setdefault("FRONTIER_CACHE_DIR", tempfile.mkdtemp(prefix="frontier-tests-"))
# tests run beside each other (xdist): the machine is rarely quiet, so timings wait little for
# quiet moments (evaluators.latency.quiet); tests marked ``timing`` run alone and wait as users do
os.environ.setdefault("FRONTIER_QUIET_MAX_WAIT_S", "0.5")


#: The longest tests (seconds on a quiet 2-core machine, ``--durations``), longest first: each
#: worker starts on its share of them. A slow test not listed comes after these.
LONGEST = (
    "test_import_hf_text_cli.py::test_the_readme_worked_example_runs_as_written",
    "test_builtin_studies.py::test_minilm_study_keeps_fidelity_at_a_fraction_of_the_size",
    "test_ray_backend.py::test_ray_backend_runs_a_study_on_two_workers",
    "test_smoke.py::test_smoke_test_writes_its_section[minilm]",
    "test_trial_path.py::test_local_and_ray_backends_store_the_same_records",
    "test_builtin_studies.py::test_builtin_study_runs[mnist1d_cnn",
    "test_import_keras_cli.py::test_the_readme_keras_example",
    "test_stored_settings.py::test_report_select_export_status_work_from_the_storage_alone",
    "test_import_hf_text_cli.py::test_a_sequence_classifier_is_searched_and_exported",
    "test_cli.py::test_run_writes_outputs_and_a_second_run_adds_trials_without_rerunning",
    "test_builtin_studies.py::test_builtin_study_runs[digits_cnn",
    "test_import_causal_lm_cli.py::test_the_readme_causal_lm_example",
    "test_smoke.py::test_smoke_test_writes_its_section[efficientnet]",
    "test_isolation_workers.py::test_two_ray_workers_never_time_beside_each_other",
    "test_postgres.py::test_four_workers_x_10_trials",
    "test_resume.py::test_driver_killed_mid_trial_resumes",
    "test_import_hf_text_cli.py::test_an_encoder_is_searched_for_embeddings_and_exported",
    "test_efficientnet_study.py::test_efficientnet_study_runs_on_a_tiny_budget",
)


def _rank(item: pytest.Item) -> tuple[int, int]:
    """Listed tests by their place in :data:`LONGEST`, then other slow tests, then the rest."""
    for i, key in enumerate(LONGEST):
        if key in item.nodeid:
            return 0, i
    return (1, 0) if item.get_closest_marker("slow") is not None else (2, 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest tests first, dealt out alternately to the two halves of the list.

    pytest-xdist's ``worksteal`` gives each worker a contiguous share of the list and lets an
    idle worker steal the end of another's queue. With every slow test in the first half, one
    worker would start on all of them and the other would steal long tests late, finishing
    alone; dealt out like cards, each worker starts on half of the long tests (longest first)
    and the short ones fill in at the end.
    """
    ordered = sorted(items, key=_rank)  # stable: collection order within a rank
    slow = [item for item in ordered if _rank(item)[0] < 2]
    quick = [item for item in ordered if _rank(item)[0] == 2]
    first, second = slow[0::2], slow[1::2]
    take = max(0, len(items) // 2 - len(first))
    items[:] = first + quick[:take] + second + quick[take:]


@pytest.fixture(autouse=True)
def _timing_alone(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``timing`` run alone: under pytest-xdist (the suite runs with ``-n``) every
    other test holds a shared lock and a timing test an exclusive one, so no other test's work
    shares the CPUs while it measures latency."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if uid is None:  # not under xdist: tests run one at a time anyway
        yield
        return
    exclusive = request.node.get_closest_marker("timing") is not None
    with open(Path(tempfile.gettempdir()) / f"frontier-tests-{uid}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_task(cache_dir: Path) -> Task:
    """The real digits-cnn task (teacher trained once per test session, ~2 s)."""
    return digits_cnn(cache=WeightCache(cache_dir), seed=0)


@pytest.fixture()
def pool(digits_task: Task, tmp_path: Path) -> StudentPool:
    """A student pool with quick distillation, caching into a fresh folder."""
    settings = DistillationSettings(epochs=3)
    return StudentPool(digits_task, WeightCache(tmp_path / "students"), settings, seed=0)


def cli_in_process(
    capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``frontier`` in this process (saves the ~4 s start-up of a subprocess); for the
    command line's error paths. Exits of argparse count as return codes."""
    from search.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["frontier", *args], code, out.out, out.err)


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``frontier`` command line for real, in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
