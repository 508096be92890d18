"""``mnist1d-cnn``: MNIST-1D (Greydanus, 2020), generated offline by the ``mnist1d`` package.

MNIST-1D draws ten 1-D digit templates through random shifts, scaling, shear and correlated
noise into 40-sample signals: small enough to train in seconds on a CPU, hard enough that a
linear model and a CNN differ by 30 points. The package's default arguments would download a
pickle; frontier calls its generator (``make_dataset``) instead, with the package's default
settings and seed, so the data is the canonical 5,000-example set, made locally.

The teacher trains for 150 epochs (Adam, learning rate 0.01 on a cosine schedule, batch 128)
with label smoothing 0.1: 95.3-95.9% validation and 93.5-93.9% test accuracy over seeds 0-2,
in 6-8 s on one thread (the MNIST-1D paper reports about 94% test accuracy for a CNN of this
shape trained on 4,000 examples; this split trains on 3,000). Without label smoothing the
same network overfits the 3,000 training signals and lands between 88% and 93% validation
accuracy depending on the seed. Label-smoothed teachers are said to distil worse (Mueller et
al., 2019, "When does label smoothing help?"); not here: distilled with the study's settings
(100 epochs, learning rate 0.01), the w0.75 / w0.5 / w0.25 students reach about 95% / 93% /
81% from this teacher, against 92% / 89% / 80% from an unsmoothed one (92% itself).
"""

from __future__ import annotations

import random
from functools import lru_cache, partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluators.tasks._common import cached_classifier, stratified_splits
from spaces.cache import WeightCache
from spaces.task import Task


class MNIST1DCNN(nn.Module):
    """Three strided 1-D convolutions and a linear head; ``width`` scales the channels."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = max(1, round(32 * width))
        self.conv1 = nn.Conv1d(1, c, 5, stride=2, padding=2)  # 40 -> 20
        self.conv2 = nn.Conv1d(c, c, 3, stride=2, padding=1)  # 20 -> 10
        self.conv3 = nn.Conv1d(c, c, 3, stride=2, padding=1)  # 10 -> 5
        self.fc = nn.Linear(c * 5, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.flatten(1))


@lru_cache(maxsize=1)
def mnist1d_data() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST-1D signals ``(n, 1, 40)`` and labels, generated (never downloaded)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds Python's and NumPy's global generators; keep the caller's state
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


def mnist1d_cnn(*, cache: WeightCache, seed: int = 0, device: torch.device | None = None) -> Task:
    """``mnist1d-cnn``: a 1-D CNN teacher on MNIST-1D; students are narrower copies."""
    x, y = mnist1d_data()
    train, val, test = stratified_splits(x, y)
    teacher = cached_classifier(
        "mnist1d-cnn-teacher-v2",
        MNIST1DCNN,
        train,
        cache,
        seed=seed,
        epochs=150,
        lr=1e-2,
        batch_size=128,
        label_smoothing=0.1,
        device=device,
    )
    students = {f"w{w}": partial(MNIST1DCNN, w) for w in (0.75, 0.5, 0.25)}
    return Task(
        name="mnist1d-cnn",
        model=teacher,
        train=train,
        val=val,
        test=test,
        example_input=(val.inputs[0][:1],),
        students=students,
    )
