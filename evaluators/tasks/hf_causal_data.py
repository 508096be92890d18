"""Text for a causal language model: documents, splits and fixed-length token blocks.

``[task] data`` is one text file or a ``{train, validation, test}`` table of them. One file is
cut into *documents* at blank lines (one or more empty lines; whitespace-only lines count as
empty; a document repeated word for word is kept once), and the documents are shuffled with
a fixed seed and dealt into train / validation / test by the ``validation_fraction`` and
``test_fraction`` options (the rest trains), so no document is in two splits. With a table
each file is one split, whole.

Each split's documents are tokenized with the checkpoint's tokenizer, joined (with the
tokenizer's end-of-text token between documents when it has one) and cut into blocks of
``block_size`` tokens; the last, shorter piece is dropped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

#: Splits are dealt with this seed whatever the study's seed, so that studies with different
#: seeds are scored on the same validation and test text.
DATA_SEED = 0
#: ``[task] data`` table keys -> frontier's split names.
SPLIT_KEYS = {"train": "train", "validation": "val", "test": "test"}
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def documents(text: str) -> list[str]:
    """The text's documents: pieces separated by blank lines, stripped, empty ones dropped,
    each text once (a paragraph repeated across the file would otherwise land in two splits)."""
    pieces = (d.strip() for d in _BLANK_LINES.split(text.replace("\r\n", "\n")))
    return list(dict.fromkeys(d for d in pieces if d))


def split_documents(
    docs: Sequence[str], *, validation: float, test: float, seed: int = DATA_SEED
) -> dict[str, list[str]]:
    """Deal ``docs`` into ``train`` / ``val`` / ``test`` (seeded shuffle; at least one
    document in each of validation and test; each document in exactly one split)."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(validation * len(docs)))
    n_test = max(1, round(test * len(docs)))
    if n_val + n_test >= len(docs):
        raise ValueError(
            f"'task.data': {len(docs)} documents (separated by blank lines) are too few to "
            f"deal {n_val} to validation, {n_test} to test and the rest to training; give "
            "more text or a {train, validation, test} table of files."
        )
    picked = {
        "val": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    return {name: [docs[i] for i in sorted(idx)] for name, idx in picked.items()}


def read_splits(
    data: str | Mapping[str, str], *, validation: float, test: float
) -> dict[str, list[str]]:
    """The documents of each split (``train``, ``val``, ``test``) from ``[task] data``."""
    if isinstance(data, str):
        docs = documents(_read(Path(data), "task.data"))
        return split_documents(docs, validation=validation, test=test)
    missing = sorted(set(SPLIT_KEYS) - set(data))
    if missing:
        raise ValueError(f"'task.data' table lacks {missing}; give train, validation and test.")
    out: dict[str, list[str]] = {}
    for key, split in SPLIT_KEYS.items():
        docs = documents(_read(Path(data[key]), f"task.data.{key}"))
        if not docs:
            raise ValueError(f"'task.data.{key}' = {data[key]!r} holds no text.")
        out[split] = docs
    return out


def _read(path: Path, key: str) -> str:
    if not path.is_file():
        raise ValueError(f"'{key}' = {str(path)!r}: no such file; give a UTF-8 text file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"'{key}' = {str(path)!r} is not UTF-8 text: {exc}.") from None


def token_blocks(
    tokenizer: Any, docs: Sequence[str], *, block_size: int, max_blocks: int | None = None
) -> torch.Tensor:
    """The documents' tokens, joined and cut into ``(blocks, block_size)`` int64 rows (at
    most ``max_blocks``, the first ones); zero rows when there are fewer tokens than a block."""
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for i, doc in enumerate(docs):
        if i and eos is not None:
            ids.append(int(eos))
        ids.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
    n = len(ids) // block_size
    if max_blocks is not None:
        n = min(n, max_blocks)
    return torch.tensor(ids[: n * block_size], dtype=torch.int64).view(n, block_size)
