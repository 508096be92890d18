"""The lookup table on disk: measured operator latencies of one machine and setting.

A table is a JSON file, built once and reused by every later study: one per machine (CPU,
core count, torch version, :func:`evaluators.latency.machine.machine_id`), runtime, thread
count and batch size, under ``$FRONTIER_CACHE_DIR/latency`` (default
``~/.cache/frontier/latency``). Each operator it lacks is timed alone when first met (in
quiet moments of the machine) and kept; saving merges with what other processes saved
meanwhile (:func:`spaces.files.update_json`), so no process loses another's entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evaluators.latency.isolation import timing
from evaluators.latency.machine import cache_root, machine_id
from evaluators.latency.measurement import LatencySettings
from evaluators.latency.tracing import OpCall, module_call_ms
from spaces.files import read_json, update_json

TABLE_VERSION = 2
_MODULE_KEY = "__module_call__"
_CALIBRATION_KEY = "__calibration__"

Calibration = tuple[float, float, float]


class LatencyTable:
    """Measured operator latencies (ms) of one machine, runtime, thread count and batch size.

    Entries are added as new operator shapes are met and saved at once (under a file lock,
    merged with what other processes saved), so a table is built once per machine.
    """

    #: Timing rounds per new op (the fastest kept) and seconds of timing per round.
    ROUNDS = 3
    OP_BUDGET_S = 0.05

    def __init__(self, settings: LatencySettings, root: Path | None = None) -> None:
        self.settings = settings
        ident = json.dumps(
            [TABLE_VERSION, machine_id(), settings.runtime, settings.threads, settings.batch_size]
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        name = f"{settings.runtime}-t{settings.threads}-b{settings.batch_size}-{digest}.json"
        self.path = (root or cache_root()) / name
        self.ident = ident
        self.entries: dict[str, float] = {}
        self.measured = 0  # entries this instance had to measure
        self.entries.update(self._stored_entries(read_json(self.path)))

    def _stored_entries(self, data: Any) -> dict[str, float]:
        """The entries of the stored value ``data`` (none when it is another table's)."""
        try:
            if data["ident"] == self.ident:
                return {k: float(v) for k, v in data["entries"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        return {}

    def save(self) -> None:
        """Store the entries, with what other processes stored meanwhile."""
        mine = dict(self.entries)

        def merge(current: Any) -> dict[str, Any]:
            self.entries = self._stored_entries(current) | mine
            return {"ident": self.ident, "entries": self.entries}

        update_json(self.path, merge)

    def module_call(self) -> float:
        """Milliseconds of one empty ``nn.Module`` call (measured once)."""
        if _MODULE_KEY not in self.entries:
            self.entries[_MODULE_KEY] = module_call_ms()
            self.measured += 1
        return self.entries[_MODULE_KEY]

    def calibration(self, name: str, fit: Callable[[], Calibration]) -> Calibration:
        """The calibration ``(a, g, c)`` stored under ``name``; ``fit()`` makes it (kept)
        when the table has none."""
        key = _CALIBRATION_KEY + name
        if key not in self.entries:
            a, g, c = fit()
            self.entries[key + "a"] = a
            self.entries[key + "g"] = g
            self.entries[key] = c
            self.measured += 1
        return self.entries[key + "a"], self.entries[key + "g"], self.entries[key]

    def lookup(self, op: OpCall) -> float:
        """The op's latency; measured now (and kept) when the table lacks it."""
        return self.lookup_all([op])[0]

    def lookup_all(self, ops: list[OpCall]) -> list[float]:
        """Latencies of ``ops``; the ones the table lacks are measured now and kept.

        Each missing op is timed in :attr:`ROUNDS` rounds, round-robin over the missing ops,
        every block of calls between two quiet probes (:mod:`evaluators.latency.quiet`), and
        keeps the fastest round: the table holds the quiet machine's speed, which is what the
        prediction is for.
        """
        missing = list({op.key: op for op in ops if op.key not in self.entries}.values())
        if missing:
            torch.set_num_threads(self.settings.threads)
            rounds: dict[str, list[float]] = {op.key: [] for op in missing}
            with timing():  # once for all rounds, not once per op (evaluators.latency.isolation)
                for _ in range(self.ROUNDS):
                    for op in missing:
                        rounds[op.key].append(op.measure(self.OP_BUDGET_S))
            for key, values in rounds.items():
                self.entries[key] = min(values)
            self.measured += len(missing)
        return [self.entries[op.key] for op in ops]
