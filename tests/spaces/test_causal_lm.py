"""The ``"causal-lm"`` kind: shifted next-token loss, perplexity, the ratio metric and
distillation from teacher logits computed batch by batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaces.cache import WeightCache
from spaces.causal_lm import (
    PERPLEXITY,
    RowLosses,
    next_token_nll,
    perplexity_ratio,
    row_nll,
)
from spaces.distillation import DistillationSettings, StudentPool, TeacherLogits, kd_loss
from spaces.task import Split, Task
from spaces.training import predict

VOCAB, SEQ = 11, 6


class TinyLM(nn.Module):
    """Token ids in, (rows, seq, vocab) logits out; position-wise, no attention needed."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, 8)
        self.out = nn.Linear(8, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(ids)))


def _ids(rows: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, SEQ), generator=torch.Generator().manual_seed(seed))


def _task(model: nn.Module) -> Task:
    train, val, test = _ids(10, 1), _ids(6, 2), _ids(6, 3)
    losses = {
        "val": row_nll(model, Split((val,), val), batch_size=4),
        "test": row_nll(model, Split((test,), test), batch_size=4),
    }
    teacher = RowLosses(torch.cat([val, test]), torch.cat([losses["val"], losses["test"]]))
    return Task(
        name="tiny-lm",
        model=model,
        train=Split((train,), train),
        val=Split((val,), val),
        test=Split((test,), test),
        example_input=(val[:1],),
        kind="causal-lm",
        metric=perplexity_ratio(teacher),
        extra_metrics={"perplexity": PERPLEXITY},
        batch_size=4,
    )


def _by_hand(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean over every predicted token of -log p(token i+1 | logits at i), with loops."""
    total, count = 0.0, 0
    for r in range(ids.shape[0]):
        for i in range(ids.shape[1] - 1):
            probs = torch.softmax(logits[r, i].double(), dim=0)
            total -= math.log(float(probs[int(ids[r, i + 1])]))
            count += 1
    return total / count


def test_perplexity_is_exp_of_the_mean_next_token_loss_by_hand() -> None:
    ids = _ids(5, 0)
    logits = torch.randn(5, SEQ, VOCAB, generator=torch.Generator().manual_seed(4))
    expected = math.exp(_by_hand(logits, ids))
    assert PERPLEXITY(logits, ids) == pytest.approx(expected, rel=1e-5)
    assert float(next_token_nll(logits, ids).mean()) == pytest.approx(
        _by_hand(logits, ids), rel=1e-5
    )


def test_the_teacher_scores_one_and_a_worse_model_less() -> None:
    task = _task(TinyLM(0))
    outputs = predict(task.model, task.val)
    assert task.metric(outputs, task.val.targets) == pytest.approx(1.0, abs=1e-6)
    other = predict(TinyLM(1), task.val)
    ratio = task.metric(other, task.val.targets)
    expected = math.exp(_by_hand(outputs, task.val.targets)) / math.exp(
        _by_hand(other, task.val.targets)
    )
    assert ratio == pytest.approx(expected, rel=1e-5)


def test_per_row_scores_average_to_the_ratio_and_subsets_find_their_rows() -> None:
    task = _task(TinyLM(0))
    other = predict(TinyLM(1), task.test)
    targets = task.test.targets
    assert task.metric.per_row is not None
    per_row = task.metric.per_row(other, targets)
    assert per_row.shape == (len(targets),)
    assert float(per_row.mean()) == pytest.approx(task.metric(other, targets), rel=1e-9)
    rows = torch.tensor([4, 0, 0, 2])  # a bootstrap resample: rows repeat, order changes
    expected = math.exp(
        float(
            (
                row_nll(task.model, Split((targets[rows],), targets[rows]), batch_size=4)
                - next_token_nll(other[rows], targets[rows])
            ).mean()
        )
    )
    assert task.metric(other[rows], targets[rows]) == pytest.approx(expected, rel=1e-5)


def test_rows_the_teacher_never_scored_are_refused() -> None:
    task = _task(TinyLM(0))
    strange = torch.full((2, SEQ), 3)
    with pytest.raises(ValueError, match="not one the teacher was scored on"):
        task.metric(torch.zeros(2, SEQ, VOCAB), strange)


def test_a_causal_lm_task_needs_token_id_targets() -> None:
    ids = _ids(4, 0)
    bad = Split((ids,), ids.float())
    with pytest.raises(ValueError, match="'causal-lm' task's targets are token ids"):
        Task("bad", TinyLM(), bad, bad, bad, (ids[:1],), kind="causal-lm")


def test_distillation_loss_is_per_token_kl_plus_next_token_ce() -> None:
    task = _task(TinyLM(0))
    student = TinyLM(1)
    logits = TeacherLogits(task.model, task.train, None)
    idx = torch.tensor([3, 1, 7])
    ids = task.train.targets[idx]
    out = student(ids)
    teacher_out = task.model(ids).detach()
    assert torch.equal(logits[idx], teacher_out)  # computed for those rows only
    t, alpha = 2.0, 0.7
    loss = kd_loss(task, logits, t, alpha)(out, ids, idx)
    kl = F.kl_div(
        F.log_softmax(out.reshape(-1, VOCAB) / t, dim=-1),
        F.softmax(teacher_out.reshape(-1, VOCAB) / t, dim=-1),
        reduction="sum",
    ) / (len(idx) * SEQ)
    ce = F.cross_entropy(out[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    expected = alpha * t * t * kl + (1 - alpha) * ce
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()  # the teacher's logits are plain tensors the loss can save
    assert student.out.weight.grad is not None


def test_the_student_pool_never_holds_all_teacher_logits(tmp_path: object) -> None:
    task = _task(TinyLM(0))
    pool = StudentPool(task, WeightCache(str(tmp_path)), DistillationSettings(epochs=1), seed=0)
    outputs = pool.teacher_train_outputs()
    assert isinstance(outputs, TeacherLogits)
    assert pool.teacher_train_outputs() is outputs
