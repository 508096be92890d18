"""Timing in the machine's quiet state.

A virtual machine shares its physical cores: on this project's machines the same forward pass
runs in about 0.53 ms for a while, then 0.72 ms, sometimes 0.96 ms, switching every second or
so, with the slow state the more common one (measured over two minutes; see BENCHMARKS.md).
A latency timed in whatever state the machine happened to be in is not repeatable, and a
lookup table built from such timings predicts nothing. So latency that must be repeatable is
timed only in the quiet state, recognised by a probe: a fixed 64x64 matrix product whose time
is stable in the quiet state (8.3-8.7 us here) and 30-100% higher in the others; but the ops
of a model do not all slow down alike (a small linear layer ran 2-2.5x slower when the probe
and the whole model ran 1.35x slower), so timings are not rescaled by the probe: they are
taken only when it says the machine is quiet.

:class:`QuietGate` knows this machine's quiet probe level (its *floor*, kept per machine in the
cache folder) and times a callable only between two quiet probes. On a dedicated machine every
probe is quiet and the gate costs the probes' time (about 0.5 ms per timed block).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evaluators.latency.machine import cache_root, machine_id
from spaces.files import read_json, update_json

_PROBE = (torch.randn(64, 64, generator=torch.Generator().manual_seed(0)),) * 2
_PROBE_CALLS = 8


def probe_us() -> float:
    """Microseconds per call of a 64x64 matrix product: the fastest of 3 blocks of 8 calls
    (about 0.2 ms; a block hit by an interrupt does not count)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(_PROBE_CALLS):
            torch.matmul(*_PROBE)
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / _PROBE_CALLS


class QuietGate:
    """Tells when the machine is in its quiet state, and times callables only then.

    The floor (the quiet probe level) is the lowest of: the lower quartile of the floors
    stored by earlier processes on this machine, and this process's own floor (the 5th
    percentile of its readings, once it has a few hundred; it first probes for
    :attr:`SAMPLE_S` seconds, and for at least :attr:`OWN_MIN` readings, when nothing is
    stored). The own floor is stored once, at the first reading past :attr:`OWN_STORE`.

    Attributes:
        tolerance: A probe within this fraction above the floor is quiet.
        max_wait_s: The longest one timing waits for quiet moments before it takes the runs
            with the quietest probes instead (a machine under sustained load is never quiet);
            default ``$FRONTIER_QUIET_MAX_WAIT_S`` or 10 s.
    """

    SAMPLE_S = 3.0
    #: Readings before this process's own floor counts, and before it is stored.
    OWN_MIN, OWN_STORE = 200, 2000
    #: Floors of earlier processes kept.
    HISTORY = 20
    #: Own readings: the floor is refreshed every ``REFRESH``; at most ``KEEP`` are kept.
    REFRESH, KEEP = 500, 20000

    def __init__(
        self, root: Path | None = None, tolerance: float = 0.15, max_wait_s: float | None = None
    ) -> None:
        ident = f"quiet-probe v2 | {machine_id()}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.path = (root or cache_root()) / f"quiet-{digest}.json"
        self.ident = ident
        self.tolerance = tolerance
        if max_wait_s is None:
            max_wait_s = float(os.environ.get("FRONTIER_QUIET_MAX_WAIT_S", "10"))
        self.max_wait_s = max_wait_s
        self.readings: list[float] = []
        #: Timed runs taken between quiet probes, and taken on a loaded machine.
        self.quiet_runs = self.loaded_runs = 0
        self._last_quiet = time.perf_counter()
        self._floor: float | None = None
        self._history: list[float] = []
        self._saved = False
        self._read_history()

    def _read_history(self) -> None:
        """The floors stored by earlier processes (none when the file is missing or stale)."""
        stored = self._stored_floors(read_json(self.path))
        if stored is not None:
            self._history = stored

    def _stored_floors(self, data: Any) -> list[float] | None:
        """The floors in the stored value ``data``; ``None`` when it is not this machine's."""
        try:
            if data["ident"] == self.ident:
                return [float(v) for v in data["floors"]][-self.HISTORY :]
        except (KeyError, TypeError, ValueError):
            pass
        return None

    def floor(self) -> float:
        """The quiet probe level, in microseconds."""
        if self._floor is None:
            if not self._history and len(self.readings) < self.OWN_MIN:
                # at least OWN_MIN readings, however slow a loaded machine makes the probe
                deadline = time.perf_counter() + self.SAMPLE_S
                while time.perf_counter() < deadline or len(self.readings) < self.OWN_MIN:
                    self.readings.append(probe_us())
            candidates = []
            if self._history:
                candidates.append(sorted(self._history)[len(self._history) // 4])
            if len(self.readings) >= self.OWN_MIN:
                candidates.append(self._own_floor())
            self._floor = min(candidates)
        return self._floor

    def _own_floor(self) -> float:
        ordered = sorted(self.readings)
        return ordered[len(ordered) // 20]

    def _store_own_floor(self) -> None:
        self._saved = True

        def merge(current: Any) -> dict[str, Any]:
            stored = self._stored_floors(current)  # what other processes stored meanwhile
            history = self._history if stored is None else stored
            self._history = [*history, self._own_floor()][-self.HISTORY :]
            return {"ident": self.ident, "floors": self._history}

        update_json(self.path, merge)

    def level(self) -> float:
        """One probe reading, as a multiple of the floor (1.0 = quiet)."""
        reading = probe_us()
        self.readings.append(reading)
        n = len(self.readings)
        if n >= self.OWN_MIN and n % self.REFRESH == 0:
            self._floor = None  # own readings refine the floor
        # once, at the first reading past OWN_STORE: the probing in floor() may have passed it
        if n >= self.OWN_STORE and not self._saved:
            self._store_own_floor()
        if n >= self.KEEP:  # bounded memory and sorting: the latest readings
            del self.readings[: n - self.KEEP // 2]
        level = reading / self.floor()
        if level <= 1 + self.tolerance:
            self._last_quiet = time.perf_counter()
        return level

    def quiet(self) -> bool:
        return self.level() <= 1 + self.tolerance

    def time_blocks(self, block: Callable[[], Any], blocks: int) -> list[float]:
        """Seconds of ``blocks`` runs of ``block()``, each run between two quiet probes.

        Waits (probing) for quiet moments, but never past :attr:`max_wait_s` after the last
        quiet probe: a machine not quiet for that long is loaded, and is timed as it is (the
        runs with the quietest probes) until it is quiet again, without waiting each time.
        """
        accepted: list[float] = []
        others: list[tuple[float, float]] = []  # (probe level, seconds)
        deadline = min(time.perf_counter(), self._last_quiet) + self.max_wait_s
        while len(accepted) < blocks:
            before = self.level()
            if before > 1 + self.tolerance and time.perf_counter() < deadline:
                continue
            start = time.perf_counter()
            block()
            seconds = time.perf_counter() - start
            worst = max(before, self.level())
            if worst <= 1 + self.tolerance:
                accepted.append(seconds)
            else:
                others.append((worst, seconds))
                if time.perf_counter() >= deadline and len(accepted) + len(others) >= blocks:
                    break
        quiet = len(accepted)
        others.sort()
        accepted += [s for _, s in others[: blocks - quiet]]
        self.quiet_runs += quiet
        self.loaded_runs += len(accepted) - quiet
        return accepted


_GATE: QuietGate | None = None


def gate() -> QuietGate:
    """This process's gate (one floor per process and machine)."""
    global _GATE
    if _GATE is None:
        _GATE = QuietGate()
    return _GATE
