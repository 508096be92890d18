"""Built-in tasks on scikit-learn's bundled digits (1,797 8x8 images, no download)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from evaluators._cache import WeightCache
from evaluators._task import Task
from evaluators.tasks._common import cached_classifier, stratified_splits


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and two linear layers; ``width`` scales every hidden size."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, hidden = (max(1, round(c * width)) for c in (16, 32, 64))
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def digits_cnn(*, cache: WeightCache, seed: int = 0) -> Task:
    """``digits-cnn``: a small CNN teacher on 8x8 digits; students are narrower copies."""
    x, y = _digits()
    train, val, test = stratified_splits(x.reshape(-1, 1, 8, 8), y)
    teacher = cached_classifier(
        "digits-cnn-teacher-v1", DigitsCNN, train, cache, seed=seed, epochs=60, lr=1e-2
    )
    students = {f"w{w}": partial(DigitsCNN, w) for w in (0.75, 0.5, 0.25)}
    return Task(
        name="digits-cnn",
        model=teacher,
        train=train,
        val=val,
        test=test,
        example_input=(val.inputs[0][:1],),
        students=students,
    )
