"""Built-in tasks on scikit-learn's bundled digits (1,797 8x8 images, no download)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluators.tasks._common import cached_classifier, stratified_splits
from spaces.cache import WeightCache
from spaces.task import Task


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and two linear layers; ``width`` scales every hidden size.

    Students drop depth too: ``convs=1`` keeps only ``conv1`` (then pools), ``hidden=False``
    drops ``fc1`` (the pooled features go straight to ``fc2``). Layer names never change, so a
    student's layers are teacher layers.
    """

    def __init__(self, width: float = 1.0, *, convs: int = 2, hidden: bool = True) -> None:
        super().__init__()
        if convs not in (1, 2):
            raise ValueError(f"'convs' must be 1 or 2. Got {convs!r} instead.")
        c1, c2, units = (max(1, round(c * width)) for c in (16, 32, 64))
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1) if convs == 2 else None
        features = (c2 if convs == 2 else c1) * 4 * 4
        self.fc1 = nn.Linear(features, units) if hidden else None
        self.fc2 = nn.Linear(units if hidden else features, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        if self.conv2 is not None:
            x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2).flatten(1)
        if self.fc1 is not None:
            x = F.relu(self.fc1(x))
        return self.fc2(x)


class DigitsMLP(nn.Module):
    """A 64-300-100-10 multilayer perceptron (the shape of LeNet-300-100) on 8x8 digits.

    ``width`` scales both hidden layers; ``depth=1`` drops ``fc2`` (64-h-10, still named
    ``fc1`` and ``fc3``).
    """

    def __init__(self, width: float = 1.0, *, depth: int = 2) -> None:
        super().__init__()
        if depth not in (1, 2):
            raise ValueError(f"'depth' must be 1 or 2. Got {depth!r} instead.")
        h1, h2 = (max(1, round(h * width)) for h in (300, 100))
        self.fc1 = nn.Linear(64, h1)
        self.fc2 = nn.Linear(h1, h2) if depth == 2 else None
        self.fc3 = nn.Linear(h2 if depth == 2 else h1, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.fc1(x))
        if self.fc2 is not None:
            x = F.relu(self.fc2(x))
        return self.fc3(x)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # lazily: ~1.5 s to import

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def digits_cnn(*, cache: WeightCache, seed: int = 0, device: torch.device | None = None) -> Task:
    """``digits-cnn``: a small CNN teacher on 8x8 digits; students are narrower copies."""
    x, y = _digits()
    train, val, test = stratified_splits(x.reshape(-1, 1, 8, 8), y)
    teacher = cached_classifier(
        "digits-cnn-teacher-v1",
        DigitsCNN,
        train,
        cache,
        seed=seed,
        epochs=60,
        lr=1e-2,
        device=device,
    )
    students = {f"w{w}": partial(DigitsCNN, w) for w in (0.75, 0.5, 0.25)}
    # shallower students: one convolution ("-c1"), or no hidden linear layer ("-f1")
    students |= {f"w{w}-c1": partial(DigitsCNN, w, convs=1) for w in (1.0, 0.5)}
    students |= {f"w{w}-f1": partial(DigitsCNN, w, hidden=False) for w in (1.0, 0.5)}
    return Task(
        name="digits-cnn",
        model=teacher,
        train=train,
        val=val,
        test=test,
        example_input=(val.inputs[0][:1],),
        students=students,
    )


def digits_mlp(*, cache: WeightCache, seed: int = 0, device: torch.device | None = None) -> Task:
    """``digits-mlp``: a 64-300-100-10 MLP on flattened digits; students narrower or shallower."""
    x, y = _digits()
    train, val, test = stratified_splits(x, y)
    teacher = cached_classifier(
        "digits-mlp-teacher-v1",
        DigitsMLP,
        train,
        cache,
        seed=seed,
        epochs=60,
        lr=3e-3,
        device=device,
    )
    students = {f"w{w}": partial(DigitsMLP, w) for w in (0.5, 0.25)}
    students |= {f"w{w}-d1": partial(DigitsMLP, w, depth=1) for w in (1.0, 0.5, 0.25)}
    return Task(
        name="digits-mlp",
        model=teacher,
        train=train,
        val=val,
        test=test,
        example_input=(val.inputs[0][:1],),
        students=students,
    )
