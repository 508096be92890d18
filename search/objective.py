"""Scoring one candidate: the study's context, and config -> figures + constraints.

This is the single seam between deciding a candidate (Optuna, Ray) and evaluating it: both
drivers call :func:`evaluate_config` with a `CompressionConfig` and get a `TrialOutcome`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from evaluators import (
    BUILTIN_TASKS,
    AccuracyEvaluator,
    Evaluator,
    LatencyEvaluator,
    SizeEvaluator,
    Task,
    WeightCache,
)
from search.spec import StudyFileError, StudySpec
from spaces import (
    TEACHER,
    CompressionConfig,
    SearchSpace,
    StudentPool,
    compress,
    compressible_layers,
)

#: Objective names and directions, in the order Optuna stores the values.
OBJECTIVES: tuple[tuple[str, str], ...] = (
    ("accuracy", "maximize"),
    ("size_bytes", "minimize"),
    ("latency_ms", "minimize"),
)


@dataclass(frozen=True)
class TrialOutcome:
    """What one candidate measured: figures (result columns) and budget constraints."""

    figures: dict[str, float]
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    @property
    def values(self) -> list[float]:
        return [self.figures[name] for name, _ in OBJECTIVES]


class StudyContext:
    """Everything a worker needs to score candidates of one study, built once per process.

    Building it loads (or trains, once, into the study's cache) the teacher; students are
    distilled lazily, the first time a trial picks them, and cached for every later trial.
    """

    def __init__(self, spec: StudySpec, results_dir: str | Path) -> None:
        self.spec = spec
        self.results_dir = Path(results_dir)
        self.cache = WeightCache(self.results_dir / "cache")
        torch.set_num_threads(spec.latency.threads)
        self.task = build_task(spec, self.cache)
        self.pool = StudentPool(self.task, self.cache, spec.distillation, seed=spec.study.seed)
        self.layers = list(compressible_layers(self.task.model))
        self.space = SearchSpace(self.layers, self.pool.names, spec.space)
        self.evaluators: list[Evaluator] = [
            SizeEvaluator(),
            AccuracyEvaluator(self.task, split="val"),
            LatencyEvaluator(self.task, spec.latency),
        ]
        self.reference_accuracy = AccuracyEvaluator(self.task, split="val").evaluate(
            _Plain(self.task.model)
        )["accuracy"]


@dataclass(frozen=True)
class _Plain:
    model: torch.nn.Module
    artifact: bytes = b""


def build_task(spec: StudySpec, cache: WeightCache) -> Task:
    """The study's task, from the built-in registry."""
    factory = BUILTIN_TASKS.get(spec.task)
    if factory is None:
        raise StudyFileError(
            f"Unknown task 'task.name' = {spec.task!r}; built-in tasks: {sorted(BUILTIN_TASKS)}."
        )
    return factory(cache=cache, seed=spec.study.seed)


def evaluate_config(
    ctx: StudyContext,
    config: CompressionConfig,
    *,
    seed: int,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    latency: Mapping[str, float] | None = None,
) -> TrialOutcome:
    """Compress a copy of the model as ``config`` says and measure it.

    ``on_epoch(epoch, model)`` runs after each recovery fine-tuning epoch (see
    :func:`spaces.compress`); early stopping raises from it. ``latency`` holds latency
    figures already measured on this candidate before fine-tuning (early stopping does):
    fine-tuning changes weight values, not the form that runs, so they are not measured again.

    Raises whatever the candidate raises (diverged training, NaN outputs, ...); drivers
    record that as a failed trial with its reason and go on.
    """
    t0 = time.perf_counter()
    candidate = compress(ctx.pool, config, finetune=ctx.spec.finetune, seed=seed, on_epoch=on_epoch)
    t1 = time.perf_counter()
    figures: dict[str, float] = {}
    for evaluator in ctx.evaluators:
        if latency is not None and isinstance(evaluator, LatencyEvaluator):
            figures.update(latency)
            continue
        figures.update(evaluator.evaluate(candidate))
    t2 = time.perf_counter()
    figures["compress_s"] = t1 - t0
    figures["evaluate_s"] = t2 - t1
    constraints = ctx.spec.budget.constraints(figures, ctx.reference_accuracy)
    return TrialOutcome(figures=figures, constraints=constraints)


def describe(config: CompressionConfig) -> str:
    """A one-line summary of a configuration, for tables."""
    bits = sorted(set(config.bits.values())) or [32]
    prunes = [r for r in config.prune.values() if r > 0]
    parts = [config.student if config.student != TEACHER else "teacher"]
    parts.append("bits " + "/".join(str(b) for b in bits))
    if prunes:
        parts.append(f"prune {min(prunes):.2f}-{max(prunes):.2f}")
    return ", ".join(parts)
