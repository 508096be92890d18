"""A tiny task whose model starts with an ``nn.Embedding`` (its input is token ids).

``bag_of_tokens`` is a task factory: tests call it directly, and study files name it as
``factory = "tests.spaces.embedding_task:bag_of_tokens"``. The label is whether more than half
of a row's tokens come from the lower half of the vocabulary; the teacher trains in well under a
second.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.task import Split, Task
from spaces.training import fit

VOCAB, LENGTH, ROWS = 32, 6, 384


class BagOfTokens(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, width)
        self.fc = nn.Linear(width, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.emb(ids).mean(dim=1))
        return out


def bag_of_tokens(seed: int = 0) -> Task:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (ROWS, LENGTH), generator=gen)
    labels = ((ids < VOCAB // 2).sum(dim=1) > LENGTH // 2).long()
    a, b = ROWS // 2, 3 * ROWS // 4
    train, val, test = (
        Split((ids[s],), labels[s]) for s in (slice(0, a), slice(a, b), slice(b, None))
    )
    torch.manual_seed(seed)
    model = BagOfTokens()
    fit(
        model,
        train,
        lambda out, y, _: F.cross_entropy(out, y),
        epochs=20,
        lr=0.05,
        batch_size=64,
        seed=seed,
    )
    return Task("bag-of-tokens", model.eval(), train, val, test, (ids[:1],), batch_size=64)
