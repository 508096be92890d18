"""One contract over every evaluator (``evaluators._base.Evaluator``).

Every evaluator, on a compressed candidate of a tiny task (digits-mlp), returns a dict of
finite plain floats under its documented result columns, leaves the candidate as it was, and
gives the same figures again where figures do not depend on timing. A new evaluator is added to
:data:`CASES` (one line); :func:`test_every_evaluator_is_in_the_contract` fails until it is.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

import evaluators
from evaluators import (
    AccuracyEvaluator,
    Evaluator,
    LatencyEvaluator,
    LatencySettings,
    SizeEvaluator,
    Task,
    WeightCache,
)
from evaluators.holdout import TestSplitEvaluator
from evaluators.latency import LatencyTable, PredictedLatencyEvaluator
from evaluators.tasks.digits import digits_mlp
from spaces import (
    Compressed,
    CompressionConfig,
    DistillationSettings,
    FinetuneSettings,
    StudentPool,
    compress,
)

#: Few timed passes, one build, no waiting for quiet moments: the figures' values are not what
#: these tests check.
FAST_TIMING = LatencySettings(batch_size=16, warmup=1, repeats=30, builds=1, quiet=False)
LATENCY_KEYS = frozenset({"latency_ms", "latency_p90_ms", "latency_cv"})


@dataclass(frozen=True)
class Case:
    """One evaluator under the contract.

    Attributes:
        cls: The evaluator's class.
        make: Builds it for a task (``root``: a folder of its own for files it writes).
        keys: The result columns it documents, exactly.
        positive: Keys whose figures are always > 0.
        deterministic: The same candidate gives the same figures again (no timing involved).
    """

    cls: type[Evaluator]
    make: Callable[[Task, Path], Evaluator]
    keys: frozenset[str]
    positive: frozenset[str] = frozenset()
    deterministic: bool = True


CASES = {
    "size": Case(SizeEvaluator, lambda t, r: SizeEvaluator(), frozenset({"size_bytes"})),
    "accuracy": Case(
        AccuracyEvaluator, lambda t, r: AccuracyEvaluator(t, split="val"), frozenset({"accuracy"})
    ),
    "accuracy-test-column": Case(
        AccuracyEvaluator,
        lambda t, r: AccuracyEvaluator(t, split="test", column="test_accuracy"),
        frozenset({"test_accuracy"}),
    ),
    "test-split": Case(
        TestSplitEvaluator,
        lambda t, r: TestSplitEvaluator(t, resamples=200),
        frozenset({"test_accuracy", "test_accuracy_low", "test_accuracy_high"}),
    ),
    "latency-torch": Case(
        LatencyEvaluator,
        lambda t, r: LatencyEvaluator(t, FAST_TIMING),
        LATENCY_KEYS,
        positive=frozenset({"latency_ms", "latency_p90_ms"}),
        deterministic=False,
    ),
    "latency-onnxruntime": Case(
        LatencyEvaluator,
        lambda t, r: LatencyEvaluator(t, replace(FAST_TIMING, runtime="onnxruntime")),
        LATENCY_KEYS,
        positive=frozenset({"latency_ms", "latency_p90_ms"}),
        deterministic=False,
    ),
    "latency-predicted": Case(
        PredictedLatencyEvaluator,
        lambda t, r: PredictedLatencyEvaluator(t, FAST_TIMING, root=r),
        frozenset({"latency_ms", "latency_predicted_ms"}),
        positive=frozenset({"latency_ms", "latency_predicted_ms"}),
    ),
}


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> Task:
    """digits-mlp, its teacher trained into a cache of its own (a few seconds)."""
    return digits_mlp(cache=WeightCache(tmp_path_factory.mktemp("contract-cache")), seed=0)


@pytest.fixture(scope="module")
def candidate(tiny_task: Task, tmp_path_factory: pytest.TempPathFactory) -> Compressed:
    """A compressed candidate: mixed bits, pruning, 8-bit activations; no training."""
    pool = StudentPool(
        tiny_task, WeightCache(tmp_path_factory.mktemp("students")), DistillationSettings(), seed=0
    )
    config = CompressionConfig(bits={"fc1": 4, "fc2": 8, "fc3": 8}, prune={"fc1": 0.5}, act_bits=8)
    return compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)


@pytest.fixture()
def fast_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The latency lookup table times each operator once, briefly."""
    monkeypatch.setattr(LatencyTable, "ROUNDS", 1)
    monkeypatch.setattr(LatencyTable, "OP_BUDGET_S", 0.01)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluators' own files (the latency lookup table), shared by the module's tests."""
    return tmp_path_factory.mktemp("evaluator-files")


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, fast_table: None) -> Case:
    return CASES[request.param]


def _snapshot(candidate: Compressed) -> tuple[dict[str, torch.Tensor], bool, bytes, str]:
    model = candidate.model
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, model.training, bytes(candidate.artifact), repr(model)


def test_figures_are_finite_floats_under_the_documented_columns(
    case: Case, tiny_task: Task, candidate: Compressed, root: Path
) -> None:
    evaluator = case.make(tiny_task, root)
    assert isinstance(evaluator, case.cls)
    figures = evaluator.evaluate(candidate)
    assert isinstance(figures, dict)
    assert set(figures) == case.keys
    for key, value in figures.items():
        assert type(value) is float, f"{key}: {type(value).__name__}, not a plain float"
        assert math.isfinite(value), f"{key} = {value}"
    assert all(figures[key] > 0 for key in case.positive), figures


def test_the_candidate_is_left_as_it_was(
    case: Case, tiny_task: Task, candidate: Compressed, root: Path
) -> None:
    state, training, artifact, structure = _snapshot(candidate)
    case.make(tiny_task, root).evaluate(candidate)
    after, training_after, artifact_after, structure_after = _snapshot(candidate)
    assert after.keys() == state.keys()
    changed = [k for k in state if not torch.equal(state[k], after[k])]
    assert not changed, f"changed by the evaluator: {changed}"
    assert (training_after, artifact_after, structure_after) == (training, artifact, structure)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.deterministic])
def test_figures_that_do_not_time_anything_repeat_exactly(
    name: str, fast_table: None, tiny_task: Task, candidate: Compressed, root: Path
) -> None:
    case = CASES[name]
    first = case.make(tiny_task, root).evaluate(candidate)
    evaluator = case.make(tiny_task, root)
    assert evaluator.evaluate(candidate) == first  # a new evaluator
    assert evaluator.evaluate(candidate) == first  # the same one again


def _evaluator_classes() -> Iterator[type[Evaluator]]:
    """Every concrete Evaluator defined in the ``evaluators`` package."""
    for info in pkgutil.walk_packages(evaluators.__path__, "evaluators."):
        importlib.import_module(info.name)
    seen: list[type[Any]] = [Evaluator]
    while seen:
        cls = seen.pop()
        seen.extend(cls.__subclasses__())
        if not inspect.isabstract(cls) and cls.__module__.startswith("evaluators."):
            yield cls


def test_every_evaluator_is_in_the_contract() -> None:
    covered = {case.cls for case in CASES.values()}
    missing = sorted(cls.__qualname__ for cls in set(_evaluator_classes()) - covered)
    assert not missing, f"add these evaluators to CASES in {__name__}: {missing}"
