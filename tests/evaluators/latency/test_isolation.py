"""The machine lock across real processes: computing shares it, timing holds it alone.

Each test runs the lock in child processes on lock files of its own (``FRONTIER_CACHE_DIR``
in a temporary folder) and checks the intervals they traced (``FRONTIER_ISOLATION_TRACE``).
Where a test needs a process to be *waiting* for the lock, it waits until the kernel lists
that process as blocked on a lock (``/proc/locks``), never for a fixed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evaluators.latency.isolation import (
    ENABLED_ENV,
    TRACE_ENV,
    Interval,
    MachineLock,
    computes,
    conflicts,
    isolation_enabled,
    read_trace,
)
from tests.conftest import REPO

Spawn = Callable[..., subprocess.Popen[bytes]]

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks to see waiting processes"
)

#: A child process: ``child.py MODE NAME``; files in the current folder signal progress.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from evaluators.latency.isolation import machine_lock

    mode, name = sys.argv[1], sys.argv[2]
    lock = machine_lock()

    def touch(what):
        Path(f"{what}.{name}").touch()

    def await_file(path):
        while not Path(path).exists():
            time.sleep(0.01)

    touch("starting")
    if mode == "hold":  # compute until told to stop
        with lock.computing():
            touch("ready")
            await_file(f"release.{name}")
    elif mode == "convert":  # compute, and time once every converting child computes
        with lock.computing():
            touch("ready")
            for other in sys.argv[3:]:
                await_file(f"ready.{other}")
            with lock.timing():
                touch("timed")
    elif mode == "compute":
        with lock.computing():
            pass
    elif mode == "time":
        with lock.timing():
            pass
    elif mode == "time-forever":  # killed while it times
        with lock.timing():
            touch("ready")
            time.sleep(600)
    """
)


@pytest.fixture(autouse=True)
def _lock_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite turns the lock off (tests/conftest.py); these tests are about it."""
    monkeypatch.setenv(ENABLED_ENV, "on")


@pytest.fixture()
def spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Spawn:
    """Start a child (mode, name, args) on this test's lock files and trace."""
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(TRACE_ENV, str(tmp_path / "trace.jsonl"))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(mode: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), mode, name, *args], cwd=tmp_path, env=env
        )

    return start


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # a hang detector, not a speed requirement
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _blocked(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (``->`` lines of ``/proc/locks``)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
            return True
    return False


def _finish(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        assert p.wait(timeout=120) == 0


def _by_pid(trace: list[Interval], pid: int, kind: str) -> list[Interval]:
    return [i for i in trace if i.pid == pid and i.kind == kind]


def test_shared_holders_compute_at_once(tmp_path: Path, spawn: Spawn) -> None:
    a, b = spawn("hold", "a"), spawn("hold", "b")
    _wait(lambda: (tmp_path / "ready.a").exists() and (tmp_path / "ready.b").exists(), "both")
    (tmp_path / "release.a").touch()
    (tmp_path / "release.b").touch()
    _finish(a, b)
    trace = read_trace(tmp_path / "trace.jsonl")
    (ia,), (ib,) = _by_pid(trace, a.pid, "compute"), _by_pid(trace, b.pid, "compute")
    assert ia.start < ib.end and ib.start < ia.end  # they overlapped
    assert conflicts(trace) == []


def test_timing_excludes_computing_and_waits_for_it(tmp_path: Path, spawn: Spawn) -> None:
    lock = MachineLock(tmp_path / "latency")
    # a process that starts computing while another times waits for the timing to end
    with lock.timing():
        child = spawn("compute", "c")
        _wait(lambda: _blocked(child.pid), "the computing child to wait")
    _finish(child)
    # a timing waits for the computing processes to finish, and counts its wait
    holder = spawn("hold", "h")
    _wait(lambda: (tmp_path / "ready.h").exists(), "the holder")
    waited = lock.waited_s
    with lock.computing():  # converts: gives up its shared lock, then waits
        timer = spawn("time", "t")  # a second timing process waits too
        _wait(lambda: _blocked(timer.pid), "the timing child to wait")
        (tmp_path / "release.h").touch()
        with lock.timing():
            assert lock.state == "exclusive"
        assert lock.state == "shared"
    assert lock.state == "unlocked"
    assert lock.waited_s > waited
    _finish(holder, timer)

    trace = read_trace(tmp_path / "trace.jsonl")
    me = os.getpid()
    first_timing, second_timing = _by_pid(trace, me, "timing")
    (computed,) = _by_pid(trace, child.pid, "compute")
    assert computed.start >= first_timing.end
    (held,) = _by_pid(trace, holder.pid, "compute")
    assert second_timing.start >= held.end
    assert conflicts(trace) == []


def test_a_waiting_timing_goes_before_processes_that_start_computing_later(
    tmp_path: Path, spawn: Spawn
) -> None:
    holder = spawn("hold", "h")
    _wait(lambda: (tmp_path / "ready.h").exists(), "the holder")
    timer = spawn("time", "t")
    _wait(lambda: _blocked(timer.pid), "the timing child to wait")
    late = spawn("compute", "late")
    _wait(lambda: _blocked(late.pid), "the late computing child to wait")
    (tmp_path / "release.h").touch()
    _finish(holder, timer, late)
    trace = read_trace(tmp_path / "trace.jsonl")
    (timed,) = _by_pid(trace, timer.pid, "timing")
    (computed,) = _by_pid(trace, late.pid, "compute")
    assert computed.start >= timed.end
    assert conflicts(trace) == []


def test_two_processes_converting_at_once_do_not_deadlock(tmp_path: Path, spawn: Spawn) -> None:
    a, b = spawn("convert", "a", "b"), spawn("convert", "b", "a")
    _finish(a, b)
    trace = read_trace(tmp_path / "trace.jsonl")
    for p in (a, b):
        assert [i.kind for i in sorted(trace, key=lambda i: i.start) if i.pid == p.pid] == [
            "compute",
            "timing",
            "compute",
        ]
    assert conflicts(trace) == []


def test_a_killed_holder_releases_the_lock(tmp_path: Path, spawn: Spawn) -> None:
    holder = spawn("time-forever", "k")
    _wait(lambda: (tmp_path / "ready.k").exists(), "the holder")
    blocked = spawn("compute", "c")
    _wait(lambda: _blocked(blocked.pid), "the computing child to wait")
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=120) == -signal.SIGKILL
    _finish(blocked)
    assert len(_by_pid(read_trace(tmp_path / "trace.jsonl"), blocked.pid, "compute")) == 1


def test_the_lock_is_reentrant_and_traces_what_it_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRACE_ENV, str(tmp_path / "trace.jsonl"))
    lock = MachineLock(tmp_path)

    @computes
    def nested() -> str:
        return "done"

    with lock.computing(), lock.computing():
        assert lock.state == "shared"
        with lock.timing(), lock.computing(), lock.timing():
            assert lock.state == "exclusive"
        assert lock.state == "shared"
    assert lock.state == "unlocked"
    with lock.timing():
        assert lock.state == "exclusive"
    assert lock.state == "unlocked"
    assert nested() == "done"
    kinds = [i.kind for i in read_trace(tmp_path / "trace.jsonl")]
    # the process-wide lock of ``computes`` writes its interval to the same trace
    assert kinds == ["compute", "timing", "compute", "timing", "compute"]


@pytest.mark.parametrize("value", ["off", "0", "false", "NO"])
def test_isolation_off_takes_no_lock_files_but_keeps_the_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    held = MachineLock(tmp_path)  # on: holds the lock shared, so a timing elsewhere must wait
    with held.computing():
        monkeypatch.setenv(ENABLED_ENV, value)
        assert not isolation_enabled()
        lock = MachineLock(tmp_path)
        done = threading.Event()

        def time_it() -> None:
            with lock.computing(), lock.timing():
                assert lock.state == "exclusive"
            done.set()

        worker = threading.Thread(target=time_it, daemon=True)
        worker.start()
        assert done.wait(timeout=60), "a timing with isolation off waited for the lock"
        assert lock.state == "unlocked" and held.state == "shared"
    monkeypatch.setenv(ENABLED_ENV, "on")
    assert isolation_enabled()


def test_conflicts_finds_timing_beside_another_process_work() -> None:
    trace = [
        Interval(pid=1, kind="compute", start=0.0, end=2.0),
        Interval(pid=1, kind="timing", start=2.0, end=3.0),  # its own compute: fine
        Interval(pid=2, kind="compute", start=3.0, end=5.0),  # touches, does not overlap
        Interval(pid=3, kind="timing", start=4.5, end=6.0),  # overlaps pid 2's compute
        Interval(pid=2, kind="compute", start=1.0, end=1.5),  # computing together: fine
    ]
    assert conflicts(trace) == [(trace[3], trace[2])]
