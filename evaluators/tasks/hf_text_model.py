"""Text encoders as frontier models: ``(input_ids, attention_mask)`` in, one tensor out.

:class:`SentenceEncoder` mean-pools a transformer's token states and L2-normalises them (as
sentence-transformers and the ``minilm`` task do); :class:`SequenceClassifier` returns a
sequence-classification model's logits. The embedding metrics (cosine fidelity to the
uncompressed model, nearest-neighbour agreement) are here too; ``minilm`` uses them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from evaluators.tasks.hf_common import keep_blocks, transformer_blocks
from spaces.task import Metric, StudentFactory


class SentenceEncoder(nn.Module):
    """A transformer encoder with mean pooling and L2 normalisation: one vector per sentence.

    The encoder is the child ``name`` (``bert`` in the ``minilm`` task, ``model`` for a
    Hugging Face checkpoint), so layer names are ``<name>.<the encoder's own names>``.
    """

    def __init__(self, bert: nn.Module, *, name: str = "bert") -> None:
        super().__init__()
        self.encoder_name = name
        self.add_module(name, bert)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        encoder = getattr(self, self.encoder_name)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class SequenceClassifier(nn.Module):
    """A Transformers sequence-classification model (child ``model``) returning its logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        logits: Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits


def _cosine_rows(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cosine_similarity(outputs.float(), targets.float(), dim=-1)


def _neighbour_rows(outputs: Tensor, targets: Tensor) -> Tensor:
    """1 where a sentence's nearest other sentence is the same as under the reference."""

    def nearest(x: Tensor) -> Tensor:
        x = F.normalize(x.float(), dim=-1)
        sim = x @ x.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(dim=1)

    return (nearest(outputs) == nearest(targets)).float()


#: Mean cosine similarity to the uncompressed model's embeddings (1.0 = identical).
COSINE_FIDELITY = Metric(
    "cosine_fidelity",
    lambda o, t: float(_cosine_rows(o, t).mean()),
    per_row=_cosine_rows,
)
#: Share of sentences whose nearest neighbour is unchanged.
NEIGHBOUR_AGREEMENT = Metric(
    "nn_agreement",
    lambda o, t: float(_neighbour_rows(o, t).mean()),
    per_row=_neighbour_rows,
)


def spread(total: int, k: int) -> tuple[int, ...]:
    """``k`` of ``total`` block indices spread evenly from the first (every other one for
    ``k = total / 2``)."""
    return tuple(sorted({round(i * total / k) for i in range(k)}))


def depth_students(teacher: nn.Module, depths: Sequence[int]) -> dict[str, StudentFactory]:
    """For each block count ``k``: ``L<k>`` keeps ``k`` blocks spread over the depth (every
    other one for half the depth) and ``L<k>-first`` the first ``k`` (when they differ); both
    copied from the teacher (then distilled by the search)."""
    students: dict[str, StudentFactory] = {}
    total = block_count(teacher)
    for k in depths:
        spaced, first = spread(total, k), tuple(range(k))
        students[f"L{k}"] = partial(keep_blocks, teacher, spaced)
        if first != spaced:  # one block of two: the same student
            students[f"L{k}-first"] = partial(keep_blocks, teacher, first)
    return students


def block_count(model: nn.Module) -> int:
    """How many transformer blocks ``model`` has (0 when it has no block list)."""
    try:
        return len(transformer_blocks(model)[1])
    except ValueError:
        return 0
