from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evaluators.latency import LatencySettings, LatencyTable, OpCall

REPO = Path(__file__).resolve().parents[3]
SETTINGS = LatencySettings(batch_size=8, repeats=30)


def _op(key: str, ms: float, calls: list[str] | None = None) -> OpCall:
    def measure(budget_s: float) -> float:
        if calls is not None:
            calls.append(key)
        return ms

    return OpCall(key, key, measure)


def test_missing_ops_are_measured_once_and_the_fastest_round_kept(tmp_path: Path) -> None:
    table = LatencyTable(SETTINGS, root=tmp_path)
    calls: list[str] = []
    ops = [_op("a", 1.0, calls), _op("b", 2.0, calls), _op("a", 1.0, calls)]
    assert table.lookup_all(ops) == [1.0, 2.0, 1.0]
    assert calls.count("a") == calls.count("b") == table.ROUNDS  # "a" twice in the pass: once
    assert table.measured == 2
    assert table.lookup(_op("a", 99.0, calls)) == 1.0 and len(calls) == 2 * table.ROUNDS


def test_saving_merges_what_another_process_saved(tmp_path: Path) -> None:
    mine = LatencyTable(SETTINGS, root=tmp_path)
    mine.lookup_all([_op("mine", 1.0), _op("shared", 5.0)])
    # another process measures other ops into the same table meanwhile
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from evaluators.latency import LatencySettings, LatencyTable, OpCall
        settings = LatencySettings(batch_size=8, repeats=30)
        table = LatencyTable(settings, root=Path({str(tmp_path)!r}))
        assert not table.entries
        ops = [OpCall(k, k, lambda _b, v=v: v) for k, v in (("theirs", 3.0), ("shared", 4.0))]
        table.lookup_all(ops)
        table.save()
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
    mine.save()
    assert mine.entries == {"mine": 1.0, "theirs": 3.0, "shared": 5.0}  # own values win
    later = LatencyTable(SETTINGS, root=tmp_path)
    assert later.entries == mine.entries
    stored = json.loads(later.path.read_text())
    assert stored == {"ident": later.ident, "entries": mine.entries}


def test_a_table_of_another_machine_or_setting_is_not_read(tmp_path: Path) -> None:
    table = LatencyTable(SETTINGS, root=tmp_path)
    table.path.write_text(json.dumps({"ident": "another machine", "entries": {"a": 1.0}}))
    assert not LatencyTable(SETTINGS, root=tmp_path).entries
    table.path.write_text("{not json")
    assert not LatencyTable(SETTINGS, root=tmp_path).entries
    other = LatencyTable(LatencySettings(batch_size=16, repeats=30), root=tmp_path)
    assert other.path != table.path and other.ident != table.ident


def test_a_calibration_is_fitted_once_and_stored(tmp_path: Path) -> None:
    fits: list[int] = []

    def fit() -> tuple[float, float, float]:
        fits.append(1)
        return 1.1, 0.01, 0.2

    table = LatencyTable(SETTINGS, root=tmp_path)
    assert table.calibration("anchors", fit) == (1.1, 0.01, 0.2)
    assert table.calibration("anchors", fit) == (1.1, 0.01, 0.2) and len(fits) == 1
    table.save()
    again = LatencyTable(SETTINGS, root=tmp_path)
    assert again.calibration("anchors", fit) == pytest.approx((1.1, 0.01, 0.2))
    assert len(fits) == 1 and again.measured == 0
    again.calibration("other anchors", fit)
    assert len(fits) == 2
