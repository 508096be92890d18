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
# latency lookup tables go to a throw-away folder, never to the user's cache (one for the whole
# run: pytest-xdist's workers inherit the controller's, and share its tables)
os.environ.setdefault("FRONTIER_CACHE_DIR", tempfile.mkdtemp(prefix="frontier-tests-"))
# no machine-wide timing lock between the tests' frontier processes
# (evaluators.latency.isolation): with it, a study timing its candidates in one worker waited
# for every study computing in the other, and the heaviest tests ran about 2.2x their time
# alone (the README's Hugging Face text example: 377 s beside the MiniLM study test, 107 s
# without the lock). No test but those marked ``timing`` (which run alone) asserts a latency;
# the tests of the lock itself turn it on
os.environ["FRONTIER_ISOLATION"] = "off"
# tests run beside each other (xdist): the machine is rarely quiet, and no test but those marked
# ``timing`` (which run alone and wait as users do) asserts a latency, so timings never wait for
# quiet moments (evaluators.latency.quiet). Under load a probe still reads quiet now and then,
# and with any wait each such reading restarted it: the README's Hugging Face text example,
# 172 s alone, took 588 s beside the MiniLM study test
os.environ.setdefault("FRONTIER_QUIET_MAX_WAIT_S", "0")


#: The longest tests (over a minute beside another test), longest first: they start first.
HEAVIEST = (
    "test_minilm_study_keeps_fidelity_at_a_fraction_of_the_size",
    "test_the_readme_worked_example_runs_as_written",
    "test_smoke_test_writes_its_section[minilm]",
    "test_the_readme_causal_lm_example_runs_and_exports_a_faithful_onnx",
    "test_builtin_study_runs[mnist1d_cnn.toml-0.93-0.92]",
    "test_the_readme_keras_example_runs_and_its_export_reproduces_the_candidate",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, then the other slow ones: the workers (pytest-xdist) share out
    the long ones at the start and end together on short ones, instead of one worker
    finishing a long test alone."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        if item.name in HEAVIEST:
            return 0, HEAVIEST.index(item.name)
        return (1 if item.get_closest_marker("slow") else 2), 0

    items.sort(key=rank)


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
