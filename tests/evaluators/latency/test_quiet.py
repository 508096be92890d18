from __future__ import annotations

import json
from pathlib import Path

from evaluators.latency import QuietGate
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
