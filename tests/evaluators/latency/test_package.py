from __future__ import annotations

import importlib
import pkgutil
import sys
import types

import pytest

import evaluators.latency


def test_every_public_name_is_exported_and_none_is_shadowed_by_a_module() -> None:
    modules = {m.name for m in pkgutil.iter_modules(evaluators.latency.__path__)}
    assert {"machine", "runtimes", "quiet", "measurement", "table", "predictor"} <= modules
    for name in evaluators.latency.__all__:
        value = getattr(evaluators.latency, name)
        # a submodule named like an exported function would replace it on the package
        assert name not in modules and not isinstance(value, types.ModuleType), name


def test_the_old_runtimes_module_still_works_with_a_deprecation_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "evaluators.runtimes", raising=False)
    with pytest.deprecated_call(match="from 'evaluators.latency'"):
        old = importlib.import_module("evaluators.runtimes")
    assert old.runner is evaluators.latency.runner
    assert old.time_model is evaluators.latency.time_model
