"""``kind = "logits"``: targets are a reference model's logits, and there are no labels."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaces.cache import WeightCache
from spaces.compress import FinetuneSettings, compress
from spaces.config import CompressionConfig
from spaces.distillation import DistillationSettings, StudentPool, kd_loss
from spaces.task import ACCURACY, Split, Task
from spaces.training import predict


class MLP(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, hidden)
        self.fc2 = nn.Linear(hidden, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(x)))
        return out


def logits_task() -> Task:
    """A random reference MLP scored against its own logits (no labels anywhere)."""
    torch.manual_seed(0)
    teacher = MLP().eval()
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = teacher(x) * 3  # sharper: most rows have a clear top class
    train, val, test = (
        Split((x[s],), logits[s]) for s in (slice(0, 200), slice(200, 250), slice(250, None))
    )
    return Task(
        "logits-mlp",
        teacher,
        train,
        val,
        test,
        (x[:1],),
        kind="logits",
        students={"h8": partial(MLP, 8)},
        batch_size=50,
    )


def test_logits_task_needs_float_logits_as_targets() -> None:
    task = logits_task()
    labels = Split(task.train.inputs, task.train.targets.argmax(dim=-1))
    with pytest.raises(ValueError, match="'logits' task's targets are reference logits"):
        Task("t", task.model, labels, task.val, task.test, task.example_input, kind="logits")
    with pytest.raises(ValueError, match=r"'kind' must be one of \['classification', "):
        Task("t", task.model, task.train, task.val, task.test, task.example_input, kind="x")  # type: ignore[arg-type]


def test_accuracy_against_logits_is_top1_agreement() -> None:
    targets = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    outputs = torch.tensor([[5.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    assert ACCURACY(outputs, targets) == pytest.approx(0.5)
    assert torch.equal(ACCURACY.per_row(outputs, targets), torch.tensor([1.0, 0.0]))  # type: ignore[misc]
    assert ACCURACY(outputs, torch.tensor([0, 2])) == pytest.approx(0.5)  # labels as before


def test_logits_loss_is_the_softened_kl_to_the_targets() -> None:
    task = logits_task()
    t = 2.0
    # the teacher's outputs are not read: the split's targets are the reference
    loss = kd_loss(task, torch.full((200, 5), float("nan")), temperature=t, alpha=0.3)
    target = task.train.targets[:4]
    idx = torch.arange(4)
    assert float(loss(target.clone(), target, idx)) == pytest.approx(0.0, abs=1e-6)
    out = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    expected = (
        t
        * t
        * F.kl_div(
            F.log_softmax(out / t, dim=-1),
            F.softmax(target / t, dim=-1),
            reduction="batchmean",
        )
    )
    assert float(loss(out, target, idx)) == pytest.approx(float(expected), rel=1e-5)


def test_students_and_finetuning_of_a_logits_task_learn_from_the_targets(tmp_path) -> None:
    task = logits_task()
    settings = DistillationSettings(temperature=1.0, epochs=60, lr=1e-2)
    pool = StudentPool(task, WeightCache(tmp_path), settings, seed=0)
    torch.manual_seed(0)
    untrained = ACCURACY(predict(MLP(8), task.val), task.val.targets)
    distilled = ACCURACY(predict(pool.get("h8"), task.val), task.val.targets)
    assert distilled >= untrained + 0.2
    # recovery fine-tuning uses the same loss: a 3-bit teacher gets closer to its float self
    config = CompressionConfig(bits={"fc1": 3, "fc2": 3})
    kl = []
    for epochs in (0, 20):
        model = compress(pool, config, finetune=FinetuneSettings(epochs, 1e-2), seed=0).model
        out = predict(model, task.train)
        kl.append(float(kd_loss(task, out, 1.0, 1.0)(out, task.train.targets, torch.arange(200))))
    assert kl[1] < kl[0]
