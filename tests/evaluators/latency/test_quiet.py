from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from evaluators.latency import QuietGate, quiet
from spaces.files import update_json


def test_storing_a_floor_keeps_the_floors_other_processes_stored(tmp_path: Path) -> None:
    gate = QuietGate(root=tmp_path)  # nothing stored yet
    gate.readings = [10.0] * gate.OWN_MIN
    update_json(gate.path, lambda _: {"ident": gate.ident, "floors": [8.0, 9.0]})  # meanwhile
    gate._store_own_floor()
    assert json.loads(gate.path.read_text()) == {"ident": gate.ident, "floors": [8.0, 9.0, 10.0]}
    later = QuietGate(root=tmp_path)
    assert later.floor() == 8.0 and not later.readings  # lower quartile of the stored floors


def test_stored_floors_are_bounded_and_another_machines_are_ignored(tmp_path: Path) -> None:
    gate = QuietGate(root=tmp_path)
    gate.readings = [5.0] * gate.OWN_MIN
    update_json(gate.path, lambda _: {"ident": "another machine", "floors": [1.0]})
    gate._store_own_floor()
    assert json.loads(gate.path.read_text())["floors"] == [5.0]
    floors = [float(i) for i in range(1, 2 * gate.HISTORY)]
    update_json(gate.path, lambda _: {"ident": gate.ident, "floors": floors})
    gate._store_own_floor()
    assert json.loads(gate.path.read_text())["floors"] == [*floors, 5.0][-gate.HISTORY :]


class FakeMachine:
    """The gate's view of the machine, made exact: probe readings come from ``readings``
    (cycled) and the clock moves ``probe_s`` per probe and ``block_s`` per timed block, so what
    the gate decides does not depend on how busy the machine running the test is."""

    def __init__(self, readings: list[float], probe_s: float = 1e-3, block_s: float = 0.0) -> None:
        self._readings = itertools.cycle(readings)
        self.now, self.probes = 0.0, 0
        self.probe_s, self.block_s = probe_s, block_s

    def perf_counter(self) -> float:
        return self.now

    def probe_us(self) -> float:
        self.probes += 1
        self.now += self.probe_s
        return next(self._readings)

    def block(self) -> None:
        self.now += self.block_s


@pytest.fixture()
def machine(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeMachine]:
    def install(readings: list[float], **kw: float) -> FakeMachine:
        fake = FakeMachine(readings, **kw)
        monkeypatch.setattr(quiet, "probe_us", fake.probe_us)
        monkeypatch.setattr(quiet, "time", fake)  # the module's clock only
        return fake

    return install


def test_quiet_gate_stores_the_machine_floor_and_times_only_quiet_runs(
    tmp_path: Path, machine: Callable[..., FakeMachine]
) -> None:
    fake = machine([float(v) for v in range(10, 30)])
    gate = QuietGate(root=tmp_path, max_wait_s=0.5)
    gate.SAMPLE_S = 0.0
    floor = gate.floor()  # nothing stored yet: probed now, OWN_MIN readings however slow
    assert len(gate.readings) == gate.OWN_MIN == fake.probes
    assert floor == sorted(gate.readings)[len(gate.readings) // 20]  # the 5th percentile
    assert 10.0 < floor < 29.0
    while len(gate.readings) < gate.OWN_STORE:
        gate.level()
    stored = json.loads(gate.path.read_text())["floors"]
    assert stored == [gate._own_floor()]
    probes = fake.probes
    again = QuietGate(root=tmp_path)  # a later process starts from the stored floor
    assert again.floor() == pytest.approx(stored[0]) and not again.readings
    assert fake.probes == probes  # without probing

    # a machine that never gets quiet: the gate waits max_wait_s, then takes the quietest runs
    gate._floor, gate._history, gate.readings = 1e-6, [1e-6], []
    gate._last_quiet = start = fake.now
    runs = gate.time_blocks(fake.block, 5)
    assert len(runs) == 5 and gate.loaded_runs == 5 and gate.quiet_runs == 0
    assert gate.max_wait_s <= fake.now - start < gate.max_wait_s + 11 * fake.probe_s
    probes = fake.probes  # loaded for longer than max_wait_s: no waiting any more
    assert len(gate.time_blocks(fake.block, 5)) == 5 and fake.probes - probes == 2 * 5
    # every reading quiet (a dedicated machine): no waiting at all, two probes per run
    gate._floor, gate._history, gate.readings = 1e9, [1e9], []
    probes = fake.probes
    assert len(gate.time_blocks(fake.block, 50)) == 50
    assert fake.probes - probes == 2 * 50 and gate.quiet_runs == 50


def test_only_runs_between_two_quiet_probes_are_timed(
    tmp_path: Path, machine: Callable[..., FakeMachine]
) -> None:
    # every 4th probe is loaded: a run between quiet probes takes 1 ms, a run followed by the
    # loaded probe 3 ms (the load came during it); only the 1 ms runs may be kept
    fake = machine([10.0, 10.0, 10.0, 20.0])
    gate = QuietGate(root=tmp_path, max_wait_s=60.0)
    gate._floor, gate._history = 10.0, [10.0]
    made = []

    def block() -> None:
        made.append(3e-3 if (fake.probes + 1) % 4 == 0 else 1e-3)
        fake.now += made[-1]

    runs = gate.time_blocks(block, 4)
    assert runs == pytest.approx([1e-3] * 4)
    assert gate.quiet_runs == 4 and gate.loaded_runs == 0
    assert made == pytest.approx([1e-3, 3e-3] * 3 + [1e-3])  # the loaded runs thrown away


def test_the_floor_is_stored_even_when_the_first_probing_passed_the_store_count(
    tmp_path: Path, machine: Callable[..., FakeMachine]
) -> None:
    machine([12.0, 13.0])
    gate = QuietGate(root=tmp_path)
    gate.readings = [11.0] * (gate.OWN_STORE + 7)  # a fast machine probed past it in floor()
    gate.level()
    assert json.loads(gate.path.read_text())["floors"] == [11.0]
    gate.level()  # stored once per process
    assert json.loads(gate.path.read_text())["floors"] == [11.0]
