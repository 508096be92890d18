"""Rebuild a stored trial's candidate exactly as the driver built it."""

from __future__ import annotations

import optuna

from search.driver import config_of
from search.objective import FINETUNE_KEPT, StudyContext, rebuild_candidate
from spaces import Compressed


class RebuildMismatch(RuntimeError):
    """The rebuilt candidate differs from the one the trial measured."""


def rebuild(ctx: StudyContext, trial: optuna.trial.FrozenTrial) -> Compressed:
    """Compress a copy of the model as ``trial`` did, with the driver's seed (without
    fine-tuning when the trial kept its rung-0 candidate).

    The driver seeds trial ``n`` with ``study seed + n``; students come from the study's
    weight cache, so the rebuilt artifact is byte-for-byte the measured one.

    Raises:
        RebuildMismatch: the rebuilt artifact's size differs from the stored ``size_bytes``
            (different weights: the cache was retrained or the code changed since the run).
    """
    finetuned = trial.user_attrs.get(FINETUNE_KEPT, 1.0) != 0.0
    candidate = rebuild_candidate(
        ctx, config_of(trial, ctx.space), trial=trial.number, finetuned=finetuned
    )
    stored = trial.user_attrs.get("size_bytes")
    if stored is not None and len(candidate.artifact) != int(stored):
        raise RebuildMismatch(
            f"Trial {trial.number}: the rebuilt artifact has {len(candidate.artifact)} bytes "
            f"but the study measured {int(stored)}; the weight cache in "
            f"{ctx.results_dir / 'cache'} or the code changed since the run."
        )
    return candidate
