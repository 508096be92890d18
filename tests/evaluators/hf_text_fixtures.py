"""Tiny Hugging Face checkpoints and text data for the importer's tests, built offline.

The tokenizer is a WordPiece vocabulary trained with the ``tokenizers`` library on Python's
bundled documentation (``pydoc_data.topics``) and wrapped as a ``BertTokenizerFast``; the
models are two-block BERTs made from a config (hidden 32, four heads). The labelled sentences
are sentences of three documentation topics, labelled by topic.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

TOPICS = ("compound", "debugger", "string-methods")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def topic_sentences(topic: str) -> list[str]:
    """Sentences of 4 to 30 words of one ``pydoc_data.topics`` entry, in order, unique."""
    from pydoc_data.topics import topics

    seen: dict[str, None] = {}
    for raw in _SENTENCE_END.split(topics[topic]):
        sentence = " ".join(raw.split())
        if 4 <= len(sentence.split()) <= 30:
            seen[sentence] = None
    return list(seen)


def labelled_rows(per_topic: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``per_topic`` sentences of each of :data:`TOPICS`, labelled by topic name, shuffled."""
    rows = [
        {"text": s, "label": topic} for topic in TOPICS for s in topic_sentences(topic)[:per_topic]
    ]
    random.Random(seed).shuffle(rows)
    return rows


def tokenizer(vocab_size: int = 400) -> Any:
    """A WordPiece ``BertTokenizerFast`` trained on the bundled documentation."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator([topics[t] for t in sorted(topics)], trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def bert_config(vocab_size: int, **overrides: Any) -> Any:
    from transformers import BertConfig

    settings: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    settings.update(overrides)
    return BertConfig(**settings)


def save_classifier(folder: Path, tok: Any, *, seed: int = 0, **config: Any) -> Path:
    """A BertForSequenceClassification with the topic names as its labels, untrained."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    labels = {name: i for i, name in enumerate(TOPICS)}
    cfg = bert_config(
        tok.vocab_size,
        num_labels=len(TOPICS),
        label2id=labels,
        id2label={i: n for n, i in labels.items()},
        **config,
    )
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_encoder(folder: Path, tok: Any, *, seed: int = 0, **config: Any) -> Path:
    """A BertModel (random weights: the embedding task scores fidelity to itself)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(bert_config(tok.vocab_size, **config)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({c: r[c] for c in columns} for r in rows)
    return path
