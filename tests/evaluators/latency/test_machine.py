from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from evaluators.latency import cache_root, cpu_model, machine_id


def test_cache_root_honours_frontier_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere" / "latency"
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "changed"))  # read on every call
    assert cache_root() == tmp_path / "changed" / "latency"


@pytest.mark.parametrize("value", [None, ""])
def test_cache_root_defaults_to_the_user_cache(
    value: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("FRONTIER_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("FRONTIER_CACHE_DIR", value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "frontier" / "latency"


def test_machine_id_names_what_a_table_is_valid_for() -> None:
    ident = machine_id()
    assert cpu_model() and ident.startswith(cpu_model())
    assert f"{os.cpu_count()} cpus" in ident and f"torch {torch.__version__}" in ident
    assert machine_id() == ident  # stable within a process: it keys the files on disk
