"""Helpers shared by the built-in tasks: seeded splits and cached teacher training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaces.cache import WeightCache
from spaces.task import Split
from spaces.training import fit

#: Splits are fixed whatever the study's seed, so that studies with different seeds (and
#: different samplers) are scored on the same validation and test rows.
DATA_SEED = 0


def stratified_splits(
    x: np.ndarray, y: np.ndarray, *, val: float = 0.2, test: float = 0.2
) -> tuple[Split, Split, Split]:
    """Seeded stratified train / validation / test splits of a classification data set."""
    idx = np.arange(len(y))
    from sklearn.model_selection import train_test_split  # lazily: ~1.5 s to import

    rest, test_idx = train_test_split(idx, test_size=test, stratify=y, random_state=DATA_SEED)
    train_idx, val_idx = train_test_split(
        rest, test_size=val / (1 - test), stratify=y[rest], random_state=DATA_SEED
    )

    def split(rows: np.ndarray) -> Split:
        return Split(
            (torch.as_tensor(x[rows], dtype=torch.float32),),
            torch.as_tensor(y[rows], dtype=torch.long),
        )

    return split(train_idx), split(val_idx), split(test_idx)


def cached_classifier(
    key: str,
    build: Callable[[], nn.Module],
    train: Split,
    cache: WeightCache,
    *,
    seed: int,
    epochs: int,
    lr: float = 3e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
    device: torch.device | None = None,
) -> nn.Module:
    """Train ``build()`` with cross-entropy (optionally label-smoothed) once per ``key`` and
    seed, on ``device`` (the weights are cached from the CPU, under a key without the
    device); later calls load it."""

    def train_it() -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = build()

        def loss(out: torch.Tensor, target: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out, target, label_smoothing=label_smoothing)

        fit(
            model,
            train,
            loss,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            weight_decay=weight_decay,
            device=device,
        )
        return model.state_dict()

    model = build()
    model.load_state_dict(cache.get_or_create(f"{key}-seed{seed}", train_it))
    return model.eval()
