"""The one training loop every part of frontier uses (teachers, students, recovery)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from spaces.task import Split

#: ``loss_fn(outputs, targets, index)``; ``index`` holds the rows' positions in the split so a
#: loss can look up precomputed per-row data (the teacher's outputs for distillation).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def fit(
    model: nn.Module,
    split: Split,
    loss_fn: LossFn,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam and a cosine learning-rate schedule.

    ``after_epoch(epoch)`` runs after each epoch (1-based) with the model in eval mode; it
    may raise to stop training early (multi-fidelity early stopping uses that).

    Raises:
        TrainingDiverged: if a loss is not finite; the caller records the candidate as failed.
    """
    if epochs <= 0:
        return model
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(split) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    model.train()
    n = len(split)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            outputs = model(*(t[idx] for t in split.inputs))
            loss = loss_fn(outputs, split.targets[idx], idx)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training loss became {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
        model.eval()
        if after_epoch is not None:
            after_epoch(epoch)
    return model


@torch.inference_mode()
def predict(model: nn.Module, split: Split, *, batch_size: int = 256) -> torch.Tensor:
    """The model's outputs on every row of ``split``, in order."""
    model.eval()
    outs = [model(*inputs) for inputs, _ in split.batches(batch_size)]
    return torch.cat(outs).float()
