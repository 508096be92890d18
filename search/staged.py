"""Evaluating a candidate rung by rung, so that early stopping can stop it between rungs.

Rung 0 is the candidate compressed without fine-tuning: it is measured once (size and latency
do not change while fine-tuning), then each rung's validation accuracy is checked by the
judge of :mod:`search.early_stopping` after that fine-tuning epoch. When the fine-tuned
candidate ends below rung 0 on validation (fine-tuning can move a nearly lossless candidate
away from its teacher), the trial is the rung-0 candidate: its figures, and
``finetune_kept = 0`` so that rebuilding it (test split, export) skips fine-tuning too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from evaluators import AccuracyEvaluator
from search.early_stopping import CandidateStopped, RungJudge, rung_key
from search.objective import FINETUNE_KEPT, StudyContext, cheap_check, evaluate_config
from search.outcome import TrialOutcome
from spaces import CompressionConfig, compress
from spaces.compress import FinetuneSettings


def evaluate_candidate(
    ctx: StudyContext, config: CompressionConfig, *, seed: int, judge: RungJudge | None
) -> TrialOutcome:
    """:func:`search.objective.evaluate_config`, stopping the candidate at a dominated rung.

    Returns the `TrialOutcome` (with ``accuracy@<epoch>`` figures for every rung, so later
    candidates can be compared with it), or raises :class:`CandidateStopped`.
    """
    if judge is None:
        return evaluate_config(ctx, config, seed=seed)
    cheap = cheap_check(ctx, config)
    if not cheap.feasible:  # over budget before training: recorded as it is, never staged
        return cheap
    if config.is_identity() or ctx.spec.finetune.epochs == 0:
        outcome = evaluate_config(ctx, config, seed=seed, cheap=cheap)
        for epoch in judge.rungs:  # nothing is fine-tuned: the same figures at every rung
            outcome.figures[rung_key(epoch)] = outcome.figures["accuracy"]
        return outcome

    t0 = time.perf_counter()
    threads = torch.get_num_threads()  # the latency evaluator sets its own; training keeps ours
    first = compress(
        ctx.pool,
        config,
        finetune=FinetuneSettings(epochs=0),
        seed=seed,
        importance=ctx.spec.space.channel_importance,
        act_calibration=ctx.spec.space.act_calibration,
    )
    base: dict[str, float] = dict(cheap.figures)  # BOPs, MACs, size bound: exact already
    for evaluator in ctx.evaluators:
        base.update(evaluator.evaluate(first))
    torch.set_num_threads(threads)
    rungs: dict[str, float] = {rung_key(0): base["accuracy"]}
    accuracy = next(e for e in ctx.evaluators if isinstance(e, AccuracyEvaluator))

    clock = {"rung0_s": 0.0, "finetune_start": 0.0}

    def stop_check(epoch: int, figures: dict[str, float]) -> None:
        try:
            judge.check(epoch, figures)
        except CandidateStopped as stop:
            stop.figures.update(rungs)
            stop.figures["stopped_epoch"] = float(epoch)
            # time split as for finished trials: rung 0 apart, compress_s is the fine-tuning
            now = time.perf_counter()
            stop.figures["rung0_s"] = clock["rung0_s"] if epoch else now - t0
            stop.figures["compress_s"] = now - clock["finetune_start"] if epoch else 0.0
            raise

    stop_check(0, dict(base))
    clock["rung0_s"] = time.perf_counter() - t0
    clock["finetune_start"] = time.perf_counter()

    def on_epoch(epoch: int, model: nn.Module) -> None:
        if epoch not in judge.rungs:
            return
        figures = {**base, **accuracy.evaluate(_Shown(model))}
        rungs[rung_key(epoch)] = figures["accuracy"]
        stop_check(epoch, figures)

    latency = {k: v for k, v in base.items() if k.startswith("latency_")}
    outcome = evaluate_config(  # GPTQ's codes are rung 0's: not rounded again
        ctx,
        config,
        seed=seed,
        on_epoch=on_epoch,
        latency=latency,
        cheap=cheap,
        rounded=first.rounded,
    )
    outcome.figures.update(rungs)
    outcome.figures["rung0_s"] = clock["rung0_s"]  # rung 0, apart from compress_s
    if outcome.figures["accuracy"] < base["accuracy"]:  # over budget or not: the better one
        # fine-tuning made it worse on validation: the trial is the post-training candidate
        kept = {**outcome.figures, **base, FINETUNE_KEPT: 0.0}
        constraints = ctx.spec.budget.constraints(kept, ctx.reference_accuracy)
        return TrialOutcome(figures=kept, constraints=constraints)
    outcome.figures[FINETUNE_KEPT] = 1.0
    return outcome


@dataclass(frozen=True)
class _Shown:
    """A model mid fine-tuning, as evaluators see it (no artifact yet)."""

    model: nn.Module
    artifact: bytes = b""
