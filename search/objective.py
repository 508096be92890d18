"""Scoring one candidate: the study's context, and config -> figures + constraints.

:func:`evaluate_config` compresses a copy of the model and measures it; the trial path
(:mod:`search.trial`) calls it, through :mod:`search.staged` when early stopping is on, in
whichever process runs the trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from evaluators.cost import CostModel
from evaluators.latency import LatencySettings, PredictedLatencyEvaluator, computes
from evaluators.tasks import load_task
from search.objective_names import DEFAULT_OBJECTIVES, DIRECTIONS
from search.outcome import TrialOutcome
from search.sensitivities import pruned_space
from search.spec import StudyFileError, StudySpec
from spaces import (
    TEACHER,
    Compressed,
    CompressionConfig,
    SearchSpace,
    StudentPool,
    compress,
    compressible_layers,
)
from spaces.compress import FinetuneSettings
from spaces.devices import resolve_device, use_device
from spaces.heads import head_modules
from spaces.quantization import QuantizedWeight
from spaces.structured import channel_roots
from spaces.students import add_custom_students

#: The default objectives' names and directions, in the order Optuna stores the values. A
#: study's own are ``spec.study.objectives`` (see :mod:`search.objective_names`).
OBJECTIVES: tuple[tuple[str, str], ...] = tuple((n, DIRECTIONS[n]) for n in DEFAULT_OBJECTIVES)


class StudyContext:
    """Everything a worker needs to score candidates of one study, built once per process.

    Building it loads (or trains, once, into the study's cache) the teacher; students are
    distilled lazily, the first time a trial picks them, and cached for every later trial.
    Building it is computing: no other frontier process times latency meanwhile
    (:mod:`evaluators.latency.isolation`).

    ``device`` is ``study.device`` resolved on this machine (:mod:`spaces.devices`): training,
    distillation, GPTQ calibration, sensitivity and accuracy run there; ``latency_device`` is
    what the latency evaluators get.
    """

    @computes
    def __init__(self, spec: StudySpec, results_dir: str | Path) -> None:
        self.spec = spec
        self.results_dir = Path(results_dir)
        try:
            self.device = resolve_device(spec.study.device, key="study.device")
        except ValueError as exc:
            raise StudyFileError(str(exc)) from None
        use_device(self.device)
        self.cache = WeightCache(self.results_dir / "cache")
        torch.set_num_threads(spec.latency.threads)
        self.task = build_task(spec, self.cache, device=self.device)
        self.pool = StudentPool(
            self.task, self.cache, spec.distillation, seed=spec.study.seed, device=self.device
        )
        self.layers = list(compressible_layers(self.task.model))
        roots = (
            channel_roots(self.task.model, self.task.example_input)
            if spec.space.channels_max > 0 or spec.space.layer_channels_max
            else []
        )
        blocks = (
            head_modules(self.task.model)
            if spec.space.heads_max > 0 or spec.space.layer_heads_max
            else []
        )
        self.space = SearchSpace(self.layers, self.pool.names, spec.space, roots, blocks)
        #: The space before space pruning: what the sensitivities probe (one cached table)
        self.full_space = self.space
        if spec.sensitivity.enabled and spec.sensitivity.prune_space:
            self.space = pruned_space(self.pool, self.full_space, spec)
        self.costs = CostModel(self.task.model, dict(self.task.students), self.task.example_input)
        self.evaluators: list[Evaluator] = [
            SizeEvaluator(),
            AccuracyEvaluator(self.task, split="val", device=self.device),
            latency_evaluator(self.task, spec.latency, device=self.latency_device),
        ]  # the test split only reports: measured at the end, for the front and baselines
        self.reference_accuracy = AccuracyEvaluator(
            self.task, split="val", device=self.device
        ).evaluate(_Plain(self.task.model))["accuracy"]

    @property
    def latency_device(self) -> torch.device | None:
        """The device latency figures are timed for: the study's device in a measured study
        (runtimes with a CUDA form run there), ``None`` (the CPU) in a predicted one, whose
        lookup table, and so its re-timing, is the CPU's."""
        return self.device if self.spec.latency.mode == "measured" else None


def latency_evaluator(
    task: Task, settings: LatencySettings, *, device: torch.device | None = None
) -> Evaluator:
    """Timing every candidate, or the lookup-table prediction (``latency.mode``), which is
    the CPU's (``device`` is for timing only)."""
    if settings.mode == "predicted":
        return PredictedLatencyEvaluator(task, settings)
    return LatencyEvaluator(task, settings, device=device)


@dataclass(frozen=True)
class _Plain:
    model: torch.nn.Module
    artifact: bytes = b""


def build_task(spec: StudySpec, cache: WeightCache, *, device: torch.device | None = None) -> Task:
    """The study's task (built-in ``task.name`` or the user's ``task.factory``), checked, with
    the study's own students (``space.custom_students``) added. ``device`` goes to factories
    that take one (a teacher trained there)."""
    try:
        task = load_task(
            name=None if spec.task_factory or spec.task_source else spec.task,
            factory=spec.task_factory,
            options=spec.task_options,
            builtins=BUILTIN_TASKS,
            cache=cache,
            seed=spec.study.seed,
            device=device,
            source=spec.task_source,
        )
        return add_custom_students(task, spec.space.custom_students)
    except ValueError as exc:
        raise StudyFileError(str(exc)) from None


def cheap_check(ctx: StudyContext, config: CompressionConfig) -> TrialOutcome:
    """BOPs and the packed-size lower bound, from the configuration alone (no training).

    The outcome is infeasible when either already breaks a budget; the caller then records
    it as it is and spends nothing more on the candidate. ``cheap_s`` is the time it took
    (building the pruned shapes is model work too).
    """
    t0 = time.perf_counter()
    figures = {**ctx.costs.figures(config), "cheap_s": 0.0}
    figures["cheap_s"] = time.perf_counter() - t0
    checked = {"size_bytes": figures["size_bound_bytes"], "bops": figures["bops"]}
    constraints = ctx.spec.budget.constraints(checked, ctx.reference_accuracy)
    if all(v <= 0 for v in constraints.values()):
        return TrialOutcome(figures=figures, constraints=constraints)
    over = ", ".join(sorted(k for k, v in constraints.items() if v > 0))
    nan = float("nan")
    rejected = {
        **figures,
        "accuracy": nan,
        "size_bytes": nan,
        "latency_ms": nan,
        "compress_s": 0.0,
        "evaluate_s": 0.0,
    }
    return TrialOutcome(
        figures=rejected,
        constraints=constraints,
        # the sampler needs finite values; constraints already rank this trial last
        objective_values={
            "accuracy": 0.0,
            "size_bytes": figures["size_bound_bytes"],
            "latency_ms": 0.0,
            "bops": figures["bops"],
        },
        skipped=f"over budget before training: {over}",
    )


def evaluate_config(
    ctx: StudyContext,
    config: CompressionConfig,
    *,
    seed: int,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    latency: Mapping[str, float] | None = None,
    cheap: TrialOutcome | None = None,
    rounded: Mapping[str, QuantizedWeight] | None = None,
) -> TrialOutcome:
    """Compress a copy of the model as ``config`` says and measure it.

    The cheap checks run first: a candidate whose BOPs or packed-size bound already breaks a
    budget is returned as infeasible without being built. ``on_epoch(epoch, model)`` runs
    after each recovery fine-tuning epoch (see :func:`spaces.compress`); early stopping raises
    from it. ``latency`` holds latency figures already measured on this candidate before
    fine-tuning (early stopping does): fine-tuning changes weight values, not the form that
    runs, so they are not measured again. ``cheap`` is the outcome of :func:`cheap_check` on
    ``config`` when the caller already has it; ``rounded`` GPTQ's codes for ``config`` from
    an earlier build of it (early stopping's rung 0), reused instead of rounding again.

    Raises whatever the candidate raises (diverged training, NaN outputs, ...); drivers
    record that as a failed trial with its reason and go on.
    """
    cheap = cheap if cheap is not None else cheap_check(ctx, config)
    if not cheap.feasible:
        return cheap
    t0 = time.perf_counter()
    candidate = compress(
        ctx.pool,
        config,
        finetune=ctx.spec.finetune,
        seed=seed,
        importance=ctx.spec.space.channel_importance,
        act_calibration=ctx.spec.space.act_calibration,
        on_epoch=on_epoch,
        rounded=rounded,
    )
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
    figures.update(cheap.figures)
    constraints = ctx.spec.budget.constraints(figures, ctx.reference_accuracy)
    return TrialOutcome(figures=figures, constraints=constraints)


#: Trial figure: 1 when the fine-tuned candidate was kept, 0 when early stopping's rung 0 was
#: (the fine-tuned one was worse on validation; see :mod:`search.staged`).
FINETUNE_KEPT = "finetune_kept"


def rebuild_candidate(
    ctx: StudyContext, config: CompressionConfig, *, trial: int, finetuned: bool = True
) -> Compressed:
    """The candidate trial number ``trial`` evaluated, built again (same seed, same weights).

    For re-measuring a front point (test split) and for exporting it with
    :func:`spaces.artifacts.save_candidate` / :func:`spaces.artifacts.export_onnx`.
    ``finetuned=False`` rebuilds a trial that kept its rung-0 candidate (``finetune_kept``).
    """
    return compress(
        ctx.pool,
        config,
        finetune=ctx.spec.finetune if finetuned else FinetuneSettings(epochs=0),
        seed=ctx.spec.study.seed + trial,
        importance=ctx.spec.space.channel_importance,
        act_calibration=ctx.spec.space.act_calibration,
    )


def describe(config: CompressionConfig) -> str:
    """A one-line summary of a configuration, for tables."""
    bits = sorted(set(config.bits.values())) or [32]
    prunes = [r for r in config.prune.values() if r > 0]
    parts = [config.student if config.student != TEACHER else "teacher"]
    parts.append("bits " + "/".join(str(b) for b in bits))
    if prunes:
        parts.append(f"prune {min(prunes):.2f}-{max(prunes):.2f}")
    channels = [r for r in config.channels.values() if r > 0]
    if channels:
        parts.append(f"channels -{min(channels):.2f}-{max(channels):.2f}")
    heads = list(config.heads.values())
    if heads:
        parts.append(f"heads -{min(heads):.2f}-{max(heads):.2f}")
    integer = any(b <= 8 for b in config.bits.values())
    if config.act_bits == 8 and integer:
        codes = ", codes 0-255" if config.act_codes == 255 else ""
        parts.append(f"int8 activations ({config.act_mode}{codes})")
    if config.rounding != "nearest" and integer:
        parts.append(f"{config.rounding.upper()} rounding")
    return ", ".join(parts)
