"""``[task] huggingface`` with ``kind = "causal-lm"``: a causal language model and its text.

The checkpoint folder (saved with ``save_pretrained``, tokenizer included) is loaded offline
(:mod:`evaluators.tasks.hf_causal_model`); the text is split by documents and cut into
fixed-length token blocks (:mod:`evaluators.tasks.hf_causal_data`). The task's metric is the
teacher's perplexity over the candidate's (1.0 for the teacher, higher is better), with the
candidate's perplexity beside it as the extra metric ``perplexity``
(:mod:`spaces.causal_lm`). Its students keep some of the decoder blocks, copied from the
teacher and distilled on the training text.

``[task.options]`` (all optional):

- ``block_size`` (128): tokens per block, at most the model's context; it is also the
  length whose latency is timed (one sequence).
- ``validation_fraction`` / ``test_fraction`` (0.1 / 0.1): documents dealt to those splits
  when ``data`` is one file.
- ``max_train_blocks`` (1024) / ``max_eval_blocks`` (64): blocks kept per split, the first
  ones. Scoring holds a split's logits, blocks x ``block_size`` x vocabulary floats, in
  memory: 64 blocks of 128 GPT-2 tokens are 1.6 GB.
- ``students``: numbers of decoder blocks the depth students keep (default: half and three
  quarters of them); ``[]`` for none.
- ``batch_size`` (8): blocks per training and scoring batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from evaluators.tasks.hf_causal_data import read_splits, token_blocks
from evaluators.tasks.hf_causal_model import (
    CausalLM,
    decoder_blocks,
    depth_student,
    load_causal_lm,
    spread,
)
from spaces.cache import WeightCache
from spaces.causal_lm import PERPLEXITY, RowLosses, perplexity_ratio, row_nll
from spaces.task import Split, Task

_DEFAULTS: dict[str, Any] = {
    "block_size": 128,
    "validation_fraction": 0.1,
    "test_fraction": 0.1,
    "max_train_blocks": 1024,
    "max_eval_blocks": 64,
    "students": None,
    "batch_size": 8,
}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_positive_int(v) for v in value)


#: option -> (check, what it must be)
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "block_size": (lambda v: _positive_int(v) and v >= 2, "an integer >= 2"),
    "validation_fraction": (_fraction, "a number in the range (0, 1)"),
    "test_fraction": (_fraction, "a number in the range (0, 1)"),
    "max_train_blocks": (_positive_int, "an integer >= 1"),
    "max_eval_blocks": (lambda v: _positive_int(v) and v >= 2, "an integer >= 2"),
    "students": (_int_list, "a list of integers >= 1 (decoder blocks each student keeps)"),
    "batch_size": (_positive_int, "an integer >= 1"),
}


def checked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with defaults filled in; ``ValueError`` naming the first bad key."""
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ValueError(
            f"'task.options.{unknown[0]}' is not an option of a causal-lm task; "
            f"its options: {sorted(_DEFAULTS)}."
        )
    for key, value in options.items():
        check, must = _CHECKS[key]
        if not check(value):
            raise ValueError(f"'task.options.{key}' must be {must}. Got {value!r} instead.")
    out = {**_DEFAULTS, **options}
    if out["validation_fraction"] + out["test_fraction"] >= 1:
        raise ValueError(
            "'task.options.validation_fraction' + 'task.options.test_fraction' must be < 1 "
            "(the rest of the documents trains)."
        )
    return out


def causal_lm_task(
    path: str,
    *,
    data: str | Mapping[str, str],
    kind: str | None = "causal-lm",
    options: Mapping[str, Any],
    cache: WeightCache,
    seed: int = 0,
    device: torch.device | None = None,
) -> Task:
    """The checkpoint at ``path`` and its text as a ``"causal-lm"`` task (see the module).

    ``seed`` does not change the data (the split of documents is fixed); students are
    distilled per seed by the search.
    """
    if kind != "causal-lm":
        raise ValueError(f"'task.kind' = {kind!r}: this importer handles 'causal-lm' only.")
    opts = checked_options(options)
    model, tokenizer = load_causal_lm(Path(path))
    block = opts["block_size"]
    context = _context(model)
    if context is not None and block > context:
        raise ValueError(
            f"'task.options.block_size' = {block} is longer than the model's context of "
            f"{context} tokens; use at most {context}."
        )
    docs = read_splits(data, validation=opts["validation_fraction"], test=opts["test_fraction"])
    limits = {"train": opts["max_train_blocks"], "val": opts["max_eval_blocks"]}
    limits["test"] = opts["max_eval_blocks"]
    blocks = {
        name: token_blocks(tokenizer, docs[name], block_size=block, max_blocks=limits[name])
        for name in ("train", "val", "test")
    }
    for name, rows in blocks.items():
        if len(rows) < (1 if name == "train" else 2):
            raise ValueError(
                f"'task.data': the {name} text makes {len(rows)} blocks of {block} tokens; "
                "give more text or a smaller 'task.options.block_size'."
            )
    splits = {name: Split((rows,), rows) for name, rows in blocks.items()}
    name = f"causal-lm-{_folder_digest(Path(path))}-{_blocks_digest(blocks)}"
    batch = opts["batch_size"]

    def teacher_losses() -> dict[str, torch.Tensor]:
        return {
            s: row_nll(model, splits[s], batch_size=batch, device=device) for s in ("val", "test")
        }

    losses = cache.get_or_create(f"{name}-teacher-nll", teacher_losses)
    scored = torch.cat([blocks["val"], blocks["test"]])
    teacher = RowLosses(scored, torch.cat([losses["val"], losses["test"]]))
    return Task(
        name=name,
        model=model,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        example_input=(blocks["val"][:1],),
        kind="causal-lm",
        metric=perplexity_ratio(teacher),
        extra_metrics={"perplexity": PERPLEXITY},
        students=_students(model, opts["students"]),
        batch_size=batch,
    )


def _context(model: CausalLM) -> int | None:
    config = model.lm.config
    for attr in ("n_positions", "max_position_embeddings"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def _students(model: CausalLM, wanted: list[int] | None) -> dict[str, Callable[[], CausalLM]]:
    """Depth students ``L<k>``: ``k`` decoder blocks spread over the teacher's ``n``."""
    if wanted == []:
        return {}
    try:
        base, attr = decoder_blocks(model)
    except ValueError:
        if wanted is None:  # by default: an architecture whose blocks are not found has none
            return {}
        raise
    n = len(getattr(base, attr))
    if wanted is None:
        wanted = sorted({max(1, n // 2), max(1, 3 * n // 4)} - {n})
    for k in wanted:
        if k >= n:
            raise ValueError(
                f"'task.options.students': a student keeps fewer than the teacher's {n} "
                f"decoder blocks; got {k}."
            )
    return {f"L{k}": partial(depth_student, model, spread(n, k)) for k in sorted(set(wanted))}


def _folder_digest(folder: Path) -> str:
    """Short sha256 of every file of the checkpoint folder (names and contents)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:10]


def _blocks_digest(blocks: Mapping[str, torch.Tensor]) -> str:
    """Short sha256 of every split's token blocks (the data as the model sees it)."""
    digest = hashlib.sha256()
    for name in sorted(blocks):
        digest.update(name.encode())
        digest.update(str(tuple(blocks[name].shape)).encode())
        digest.update(blocks[name].numpy().tobytes())
    return digest.hexdigest()[:10]
