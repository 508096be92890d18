"""Timing alone on the machine: a machine-wide readers-writer lock between frontier processes.

Several frontier workers on one machine (``frontier run`` processes sharing a study, Ray
workers on one node, two studies) would otherwise time a candidate while another trains on
the same cores, and the figure would be off by up to 2x. So every process that computes
(a trial's evaluation, building a study's context) holds the machine's lock *shared*, and
every timed block holds it *exclusively*: no candidate is timed while another frontier
worker computes here, and computing goes on in parallel between timings.

The lock is two files under the latency cache folder
(:func:`evaluators.latency.machine.cache_root`, so ``FRONTIER_CACHE_DIR`` names it; one per
machine, shared by every study), each taken with the project's one file lock
(:func:`spaces.files.file_lock`, ``fcntl.flock``: released when its process dies, however
it dies):

- ``isolation.lock``: shared while computing, exclusive while timing;
- ``isolation.gate.lock``: a turnstile giving timing priority. A process waiting to time
  holds it exclusively, and a process starting to compute passes it (shared) first, so
  workers that keep starting new trials cannot keep a timing waiting forever.

A process that computes and then times (the usual case: a trial measures its candidate's
latency) *converts*: it releases its shared lock, waits for the exclusive one, and takes
the shared one again afterwards. Each lock is a fresh open of the lock file, so no process
ever asks for the exclusive lock while holding the shared one: two processes converting at
once cannot wait for each other (with ``flock`` on one open file, the kernel would drop
the shared lock first anyway, but the code does not rely on it). No process waits at the
gate or for the lock while holding either.

Set ``FRONTIER_ISOLATION=off`` to have a process take no lock files (the bookkeeping and the
trace go on): its timings and its computing then neither wait for nor hold up other frontier
processes, for runs whose timings need not be exact (the test suite, whose parallel workers
would otherwise take turns; predicted latency on a machine shared anyway).

Set ``FRONTIER_ISOLATION_TRACE`` to a file to have every process append one JSON line per
interval it held the lock: ``{"pid", "kind": "compute"|"timing", "start", "end"}``
(``time.time()``), for checking that no timing overlapped another process's compute.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from evaluators.latency.machine import cache_root
from spaces.files import file_lock

#: Environment variable naming the interval trace file (unset: no trace).
TRACE_ENV = "FRONTIER_ISOLATION_TRACE"
#: Environment variable turning the lock files off (``off``, ``0``, ``false`` or ``no``).
ENABLED_ENV = "FRONTIER_ISOLATION"
_OFF = ("off", "0", "false", "no")


def isolation_enabled() -> bool:
    """Whether processes take the machine's lock files (``$FRONTIER_ISOLATION``, read on every
    call; on unless it is ``off``, ``0``, ``false`` or ``no``)."""
    return os.environ.get(ENABLED_ENV, "on").strip().lower() not in _OFF


_P = ParamSpec("_P")
_R = TypeVar("_R")
_UNLOCKED, _SHARED, _EXCLUSIVE = "unlocked", "shared", "exclusive"


class MachineLock:
    """The machine-wide readers-writer lock of one process: :meth:`computing` and :meth:`timing`.

    Both are re-entrant within the process: :meth:`computing` inside :meth:`computing` or
    :meth:`timing` takes nothing more, :meth:`timing` inside :meth:`timing` neither, and
    :meth:`timing` inside :meth:`computing` converts (see the module's docstring). Threads of
    one process share its state: the lock isolates processes, not threads.

    Args:
        folder: Where the lock files live; ``None``: :func:`cache_root`, read when the lock
            is taken.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        #: Seconds this process has waited for the exclusive lock, in all.
        self.waited_s = 0.0
        self._mutex = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._state = _UNLOCKED
        self._compute_depth = 0
        self._timing_depth = 0
        self._held = contextlib.ExitStack()
        self._since = 0.0

    def _paths(self) -> tuple[Path, Path]:
        folder = self.folder if self.folder is not None else cache_root()
        return folder / "isolation.lock", folder / "isolation.gate.lock"

    @property
    def state(self) -> str:
        """``"unlocked"``, ``"shared"`` or ``"exclusive"``: what this process holds now."""
        return self._state

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Hold the lock shared for the block: no other process times meanwhile."""
        with self._mutex:
            if self._state == _UNLOCKED:
                self._take(_SHARED)
            self._compute_depth += 1
        try:
            yield
        finally:
            with self._mutex:
                self._compute_depth -= 1
                if self._compute_depth == 0 and self._state == _SHARED:
                    self._release()

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Hold the lock exclusively for the block: no other process computes or times
        meanwhile. Inside :meth:`computing`, the shared lock is released first and taken
        again afterwards. The wait is added to :attr:`waited_s`."""
        with self._mutex:
            if self._state != _EXCLUSIVE:
                if self._state == _SHARED:
                    self._release()
                start = time.perf_counter()
                self._take(_EXCLUSIVE)
                self.waited_s += time.perf_counter() - start
            self._timing_depth += 1
        try:
            yield
        finally:
            with self._mutex:
                self._timing_depth -= 1
                if self._timing_depth == 0:
                    self._release()
                    if self._compute_depth > 0:
                        self._take(_SHARED)

    def _take(self, state: str) -> None:
        if not isolation_enabled():  # the state is kept, the machine's files are not taken
            self._state = state
            self._since = time.time()
            return
        lock, gate = self._paths()
        if state == _SHARED:
            with file_lock(gate, shared=True):  # waits while a timing process waits
                self._held.enter_context(file_lock(lock, shared=True))
        else:
            with file_lock(gate):  # new computing waits at the gate from now on
                self._held.enter_context(file_lock(lock))
        self._state = state
        self._since = time.time()

    def _release(self) -> None:
        end = time.time()
        self._held.close()
        kind = "compute" if self._state == _SHARED else "timing"
        self._state = _UNLOCKED
        _trace(kind, self._since, end)

    def _forget_in_child(self) -> None:
        # a forked child shares the parent's open lock files: dropping them unlocked (not
        # closing the stack, which would unlock them for the parent too) leaves them to it
        self._mutex = threading.RLock()
        _INHERITED.append(self._held.pop_all())  # kept: collecting it would unlock too
        self._reset()


def _trace(kind: str, start: float, end: float) -> None:
    """Append one interval to the trace file named by ``FRONTIER_ISOLATION_TRACE``, if set."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = json.dumps({"pid": os.getpid(), "kind": kind, "start": start, "end": end}) + "\n"
    # one write of a short line to a file opened for appending lands whole
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


#: Lock holds a forked child inherited, never released by the child (see ``_forget_in_child``).
_INHERITED: list[contextlib.ExitStack] = []
_LOCK = MachineLock()
os.register_at_fork(after_in_child=lambda: _LOCK._forget_in_child())


def machine_lock() -> MachineLock:
    """This process's :class:`MachineLock` on the machine's lock files."""
    return _LOCK


def computing() -> contextlib.AbstractContextManager[None]:
    """``machine_lock().computing()``: this process computes; nothing is timed meanwhile."""
    return _LOCK.computing()


def timing() -> contextlib.AbstractContextManager[None]:
    """``machine_lock().timing()``: this process times alone on the machine."""
    return _LOCK.timing()


def computes(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: ``func`` runs under :func:`computing` (building a study's context, say)."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _LOCK.computing():
            return func(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Interval:
    """One interval a process held the lock: ``kind`` ``"compute"`` (shared) or ``"timing"``
    (exclusive), from ``start`` to ``end`` (``time.time()``)."""

    pid: int
    kind: str
    start: float
    end: float


def read_trace(path: str | os.PathLike[str]) -> list[Interval]:
    """The intervals in a trace file (``FRONTIER_ISOLATION_TRACE``), in the order written."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [Interval(**json.loads(line)) for line in lines if line.strip()]


def conflicts(trace: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs ``(timing, other)`` where one process timed while another computed or timed:
    empty when every timing ran alone on the machine."""
    timings = [t for t in trace if t.kind == "timing"]
    return [
        (t, other)
        for t in timings
        for other in trace
        if other.pid != t.pid and other.start < t.end and t.start < other.end
    ]
