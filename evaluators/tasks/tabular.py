"""``breast-cancer-mlp``: a tabular classifier on scikit-learn's bundled breast-cancer data.

569 tumours, 30 numeric features, two classes; the small-MLP-on-features case of
recommendation and tabular models. Features are standardised with the *training* split's
mean and standard deviation only, so no statistic of the validation or test rows leaks in.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluators.tasks._common import cached_classifier, stratified_splits
from spaces.cache import WeightCache
from spaces.task import Split, Task


class TabularMLP(nn.Module):
    """Two hidden layers with ReLU; ``width`` scales both."""

    def __init__(self, n_features: int = 30, n_classes: int = 2, width: float = 1.0) -> None:
        super().__init__()
        h1, h2 = (max(1, round(h * width)) for h in (64, 32))
        self.fc1 = nn.Linear(n_features, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def standardise(train: Split, *others: Split) -> tuple[Split, ...]:
    """Scale every split with the training split's per-feature mean and deviation."""
    x = train.inputs[0]
    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-8)
    return tuple(Split(((s.inputs[0] - mean) / std,), s.targets) for s in (train, *others))


def breast_cancer_mlp(
    *, cache: WeightCache, seed: int = 0, device: torch.device | None = None
) -> Task:
    """``breast-cancer-mlp``: a 30-64-32-2 MLP; students at width 0.5 and 0.25."""
    from sklearn.datasets import load_breast_cancer  # lazily: ~1.5 s to import

    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    train, val, test = standardise(*stratified_splits(x, y))
    teacher = cached_classifier(
        "breast-cancer-mlp-teacher-v1",
        TabularMLP,
        train,
        cache,
        seed=seed,
        epochs=60,
        lr=3e-3,
        batch_size=32,
        weight_decay=1e-4,
        device=device,
    )
    students = {f"w{w}": partial(TabularMLP, 30, 2, w) for w in (0.5, 0.25)}
    return Task(
        name="breast-cancer-mlp",
        model=teacher,
        train=train,
        val=val,
        test=test,
        example_input=(val.inputs[0][:1],),
        students=students,
        batch_size=32,
    )
