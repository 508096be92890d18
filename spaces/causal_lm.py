"""Causal language models: next-token loss, perplexity and the metric a search ranks on.

A ``"causal-lm"`` task's model maps token ids ``(rows, seq)`` to logits ``(rows, seq, vocab)``;
its targets are the same token ids. Position ``i``'s logits predict token ``i + 1`` (the loss
is *shifted*): the last position has nothing to predict, so a block of ``seq`` tokens scores
``seq - 1`` predictions. Every block has the same length, so the mean over all predicted
tokens equals the mean over rows of each row's mean.

The metric is the teacher's perplexity over the candidate's (:func:`perplexity_ratio`): 1.0
for the teacher, below 1 for a candidate that predicts the text worse, higher is better as
frontier's budgets expect. It needs the teacher's per-row loss on the same rows; those are
looked up by the rows' tokens (:class:`RowLosses`), so any subset of a split (the sensitivity
probes' first rows, a bootstrap resample) is scored against the same rows of the teacher.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces.devices import device_of, on_device, to_device
from spaces.task import Metric, Split


def next_token_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Each row's mean negative log-likelihood (nats) of tokens ``1..seq-1`` given the ones
    before: ``logits[:, :-1]`` against ``ids[:, 1:]``. One value per row."""
    if logits.dim() != 3 or ids.dim() != 2 or logits.shape[:2] != ids.shape:
        raise ValueError(
            f"A causal LM's logits must be (rows, seq, vocab) and its targets (rows, seq); "
            f"got {tuple(logits.shape)} and {tuple(ids.shape)}."
        )
    pred = logits[:, :-1].float()
    nll = F.cross_entropy(pred.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    return nll.view(ids.shape[0], -1).mean(dim=1)


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every predicted token of the batch."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def token_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` per token position, averaged over
    every position of the batch (no shift: each position's distributions are compared)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student.flatten(0, -2) / t, dim=-1),
        F.log_softmax(teacher.flatten(0, -2) / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


@torch.no_grad()
def row_nll(
    model: nn.Module, split: Split, *, batch_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """:func:`next_token_nll` of ``model`` on every row of ``split``, on the CPU, one batch of
    logits at a time (rows x seq x vocab logits are never held for the whole split)."""
    model.eval()
    out = []
    with on_device(model, device):
        device = device_of(model)
        for inputs, targets in split.batches(batch_size):
            (ids,) = to_device((targets,), device)
            out.append(next_token_nll(model(*to_device(inputs, device)), ids).cpu())
    return torch.cat(out)


class RowLosses:
    """The teacher's per-row next-token loss, looked up by a row's tokens."""

    def __init__(self, rows: torch.Tensor, losses: torch.Tensor) -> None:
        if len(rows) != len(losses):
            raise ValueError(f"{len(rows)} rows but {len(losses)} losses; they must match.")
        self._by_row: dict[bytes, float] = {
            _key(row): float(loss) for row, loss in zip(rows, losses, strict=True)
        }

    def __len__(self) -> int:
        return len(self._by_row)

    def of(self, rows: torch.Tensor) -> torch.Tensor:
        """The losses of ``rows`` (token ids, rows x seq), in order.

        Raises:
            ValueError: a row the teacher was not scored on.
        """
        try:
            return torch.tensor([self._by_row[_key(row)] for row in rows], dtype=torch.float64)
        except KeyError:
            raise ValueError(
                "perplexity ratio: a row of these targets is not one the teacher was scored "
                "on; score rows of the task's own validation or test split."
            ) from None


def _key(row: torch.Tensor) -> bytes:
    return bytes(row.detach().cpu().to(torch.int64).numpy().tobytes())


def perplexity(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """``exp`` of the mean next-token loss over every predicted token (lower is better)."""
    return math.exp(float(next_token_nll(outputs, targets).double().mean()))


def perplexity_ratio(teacher: RowLosses) -> Metric:
    """Teacher perplexity / candidate perplexity on the same rows (1.0 for the teacher).

    ``per_row`` is the ratio's first-order (delta-method) expansion around the rows' mean:
    ``ratio * (1 + d_i - mean(d))`` with ``d_i`` the teacher's minus the candidate's loss on
    row ``i``. Its mean is the ratio exactly; the mean over a bootstrap resample is the
    ratio of that resample to first order (the ratio is ``exp(mean(d))``, not a mean of
    per-row figures, and resampling the (rows x seq x vocab) logits instead would cost a
    copy of them per resample).
    """

    def differences(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return teacher.of(targets) - next_token_nll(outputs, targets).double()

    def ratio(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return math.exp(float(differences(outputs, targets).mean()))

    def per_row(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        d = differences(outputs, targets)
        return math.exp(float(d.mean())) * (1.0 + d - d.mean())

    return Metric("perplexity_ratio", ratio, per_row=per_row)


#: The candidate's own perplexity, reported beside the ratio (lower is better).
PERPLEXITY = Metric("perplexity", perplexity)
