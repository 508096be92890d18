"""The one training loop every part of frontier uses (teachers, students, recovery)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from spaces.devices import device_of, on_device, to_device
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
    device: torch.device | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam and a cosine learning-rate schedule.

    ``after_epoch(epoch)`` runs after each epoch (1-based) with the model in eval mode; it
    may raise to stop training early (multi-fidelity early stopping uses that).

    ``device``: where the steps run (see :mod:`spaces.devices`). The model is moved there for
    the training, ``after_step`` and ``after_epoch`` included, and back where it was after
    it; batches are moved there, the row order is drawn on the CPU (the same order on every
    device), and ``loss_fn`` gets the rows' ``index`` on the CPU. ``None`` trains where the
    model is.

    Raises:
        TrainingDiverged: if a loss is not finite; the caller records the candidate as failed.
    """
    if epochs <= 0:
        return model
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(split) / batch_size)
    n = len(split)
    with on_device(model, device):  # the optimizer is made on the device's parameters
        device = device_of(model)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                inputs = to_device(tuple(t[idx] for t in split.inputs), device)
                (targets,) = to_device((split.targets[idx],), device)
                loss = loss_fn(model(*inputs), targets, idx)
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
def predict(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The model's outputs on every row of ``split``, in order, on the CPU.

    ``device``: where the forward passes run; the model is moved there and back (see
    :func:`spaces.devices.on_device`); ``None`` runs them where the model is.
    """
    model.eval()
    with on_device(model, device):
        device = device_of(model)
        outs = [model(*to_device(inputs, device)) for inputs, _ in split.batches(batch_size)]
    return torch.cat(outs).float().cpu()
