"""``[task] huggingface`` with ``kind = "sequence-classification"`` or ``"embedding"``.

A Transformers checkpoint folder (``save_pretrained``: config, weights, tokenizer) and text
data become a :class:`spaces.task.Task` whose model takes ``(input_ids, attention_mask)``, each
row padded or truncated to ``task.options.max_length`` tokens, and returns one tensor:

- ``"sequence-classification"``: ``AutoModelForSequenceClassification``'s logits
  (:class:`~evaluators.tasks.hf_text_model.SequenceClassifier`), scored by accuracy on the
  data's labels (:mod:`evaluators.tasks.hf_text_data` says how labels become class ids);
- ``"embedding"``: ``AutoModel``'s token states, mean-pooled over the attention mask and
  L2-normalised (:class:`~evaluators.tasks.hf_text_model.SentenceEncoder`), scored by the
  mean cosine similarity to the uncompressed model's embeddings (computed once, cached), with
  nearest-neighbour agreement beside it, as in the ``minilm`` task.

The encoder's ``nn.Linear`` and ``nn.Embedding`` layers are searched (bits, pruning); BERT-style
attention blocks offer head pruning (:mod:`spaces.heads`); the students are depth students,
copies of the teacher keeping some of its transformer blocks, distilled by the search. Nothing
is downloaded (:mod:`evaluators.tasks.hf_common`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from evaluators.tasks.hf_common import (
    checkpoint_digest,
    checkpoint_folder,
    files_digest,
    load_model,
    load_tokenizer,
    tokenize,
    transformers_offline,
    untie_shared_weights,
)
from evaluators.tasks.hf_text_data import (
    SPLITS,
    encode_labels,
    label_ids,
    load_splits,
)
from evaluators.tasks.hf_text_model import (
    COSINE_FIDELITY,
    NEIGHBOUR_AGREEMENT,
    SentenceEncoder,
    SequenceClassifier,
    block_count,
    depth_students,
)
from spaces.cache import WeightCache
from spaces.task import ACCURACY, Split, Task
from spaces.training import predict

log = logging.getLogger("frontier")
KINDS = ("sequence-classification", "embedding")
#: ``max_length`` when the study does not set it (or the model's limit, when smaller).
DEFAULT_MAX_LENGTH = 128


@dataclass(frozen=True)
class TextOptions:
    """``[task.options]`` of a Hugging Face text task, checked (see :func:`text_options`)."""

    text_column: str = "text"
    label_column: str = "label"
    max_length: int | None = None
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    batch_size: int = 32
    depths: tuple[int, ...] | None = None


#: option -> (type, what it must be), one table for every check.
_SCHEMA: dict[str, tuple[type, str]] = {
    "text_column": (str, "a column name"),
    "label_column": (str, "a column name"),
    "max_length": (int, "an int in the range [2, the model's position limit]"),
    "validation_fraction": (float, "a float in the range (0, 0.5)"),
    "test_fraction": (float, "a float in the range (0, 0.5)"),
    "batch_size": (int, "an int in the range [1, inf)"),
    "depths": (list, "a list of block counts, each in the range [1, blocks - 1]"),
}


def text_options(kind: str, options: Mapping[str, Any]) -> TextOptions:
    """Check the ``[task.options]`` table once, at the boundary.

    Raises:
        ValueError: an unknown key or a value of the wrong type or range, naming
            ``task.options.<key>``.
    """
    allowed = [k for k in _SCHEMA if kind == "sequence-classification" or k != "label_column"]
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"Unknown key 'task.options.{key}' for kind {kind!r}; allowed keys: "
                f"{sorted(allowed)}."
            )
        expected, what = _SCHEMA[key]
        ok = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and key == "depths":
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            value = tuple(value)
        elif ok and expected is float:
            ok = 0.0 < value < 0.5
        elif ok and key in ("batch_size", "max_length"):
            ok = value >= (1 if key == "batch_size" else 2)
        elif ok and expected is str:
            ok = bool(value)
        if not ok:
            raise ValueError(f"'task.options.{key}' must be {what}. Got {value!r} instead.")
        values[key] = value
    checked = TextOptions(**values)
    if checked.validation_fraction + checked.test_fraction >= 0.8:
        raise ValueError(
            "'task.options.validation_fraction' + 'task.options.test_fraction' must stay below "
            f"0.8 (the rest trains). Got {checked.validation_fraction + checked.test_fraction}."
        )
    return checked


def huggingface_text_task(
    path: str,
    *,
    data: str | Mapping[str, str],
    kind: str | None,
    options: Mapping[str, Any],
    cache: WeightCache,
    seed: int = 0,
    device: torch.device | None = None,
) -> Task:
    """A Hugging Face text checkpoint and its data as a :class:`Task`.

    Args:
        path: The checkpoint folder (absolute).
        data: One data file, split 60 / 20 / 20 by default, or ``{"train", "validation",
            "test"}`` files.
        kind: ``"sequence-classification"`` or ``"embedding"``.
        options: ``[task.options]``: ``text_column``, ``label_column`` (classification),
            ``max_length``, ``validation_fraction``, ``test_fraction``, ``batch_size``,
            ``depths`` (block counts of the depth students).
        cache: Where the embedding task's reference embeddings are stored.
        seed: Unused for the data (splits are fixed); kept for the contract.
        device: Where the reference embeddings are computed (once).

    Raises:
        ValueError: anything the study file can fix, naming its key.
    """
    if kind not in KINDS:
        raise ValueError(f"'task.kind' = {kind!r}: this importer reads {list(KINDS)}.")
    folder = checkpoint_folder(path)
    opts = text_options(kind, options)
    transformers = transformers_offline()
    tokenizer = load_tokenizer(folder)
    model = _load(transformers, folder, kind)
    untied = untie_shared_weights(model)
    if untied:
        log.info("Untied shared weights (each now stored on its own): %s", untied)
    max_length = _max_length(model, tokenizer, opts.max_length)
    classification = kind == "sequence-classification"
    text = load_splits(
        data,
        text_column=opts.text_column,
        label_column=opts.label_column if classification else None,
        validation=opts.validation_fraction,
        test=opts.test_fraction,
    )
    inputs = {s: tokenize(tokenizer, text.texts[s], max_length) for s in SPLITS}
    files = sorted({Path(p) for p in ([data] if isinstance(data, str) else data.values())})
    settings: tuple[Any, ...] = (kind, opts.text_column, opts.label_column, max_length)
    settings += (opts.validation_fraction, opts.test_fraction)
    data_digest = files_digest(files, extra=[repr(settings)])
    name = f"hf-{'seqcls' if classification else 'embed'}-{checkpoint_digest(folder)[:8]}"
    name += f"-{data_digest[:8]}"
    if classification:
        targets = _class_targets(model, text.labels or {})
    else:
        targets = _reference_embeddings(model, inputs, cache, f"{name}-reference", device)
    splits = {s: Split(inputs[s], targets[s]) for s in SPLITS}
    depths = _depths(model, opts.depths)
    val = splits["validation"]
    return Task(
        name=name,
        model=model,
        train=splits["train"],
        val=val,
        test=splits["test"],
        example_input=tuple(t[:1] for t in val.inputs),
        kind="classification" if classification else "embedding",
        metric=ACCURACY if classification else COSINE_FIDELITY,
        extra_metrics={} if classification else {"nn_agreement": NEIGHBOUR_AGREEMENT},
        students=depth_students(model, depths),
        batch_size=opts.batch_size,
    )


def _load(transformers: Any, folder: Path, kind: str) -> nn.Module:
    if kind == "embedding":
        encoder = load_model(transformers.AutoModel, folder)
        # mean pooling never reads a pooler head: drop it (BERT-style models accept None)
        init = inspect.signature(type(encoder).__init__).parameters
        if "add_pooling_layer" in init and isinstance(getattr(encoder, "pooler", None), nn.Module):
            setattr(encoder, "pooler", None)  # noqa: B010 (typed as a module)
        return SentenceEncoder(encoder, name="model").eval()
    classifier = load_model(transformers.AutoModelForSequenceClassification, folder)
    config: Any = classifier.config
    if getattr(config, "problem_type", None) in ("regression", "multi_label_classification") or (
        config.num_labels < 2
    ):
        raise ValueError(
            f"'task.huggingface' = {str(folder)!r}: the checkpoint is a "
            f"{config.problem_type or 'one-output'} model; kind 'sequence-classification' "
            "takes single-label classifiers with two or more labels."
        )
    return SequenceClassifier(classifier).eval()


def _config(model: nn.Module) -> Any:
    inner = getattr(model, getattr(model, "encoder_name", "model"))
    return inner.config


def _max_length(model: nn.Module, tokenizer: Any, wanted: int | None) -> int:
    limits = [DEFAULT_MAX_LENGTH * 1_000_000]
    positions = getattr(_config(model), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limits.append(tok_limit)
    limit = min(limits)
    if wanted is None:
        return min(DEFAULT_MAX_LENGTH, limit)
    if wanted > limit:
        raise ValueError(
            f"'task.options.max_length' = {wanted}: the model reads at most {limit} tokens."
        )
    return wanted


def _class_targets(model: nn.Module, labels: Mapping[str, list[Any]]) -> dict[str, Tensor]:
    config = _config(model)
    everything = [v for s in SPLITS for v in labels[s]]
    mapping = label_ids(
        everything, label2id=dict(config.label2id or {}), num_labels=int(config.num_labels)
    )
    log.info("Labels to class ids (%s rule): %s", mapping.rule, mapping.ids)
    return {s: torch.tensor(encode_labels(labels[s], mapping), dtype=torch.long) for s in SPLITS}


def _reference_embeddings(
    model: nn.Module,
    inputs: Mapping[str, tuple[Tensor, Tensor]],
    cache: WeightCache,
    key: str,
    device: torch.device | None,
) -> dict[str, Tensor]:
    def compute() -> dict[str, Tensor]:
        rows = {s: Split(inputs[s], torch.zeros(len(inputs[s][0]))) for s in SPLITS}
        return {s: predict(model, rows[s], batch_size=64, device=device) for s in SPLITS}

    return dict(cache.get_or_create(key, compute))


def _depths(model: nn.Module, wanted: tuple[int, ...] | None) -> tuple[int, ...]:
    blocks = block_count(model)
    if wanted is None:
        return (blocks // 2,) if blocks >= 2 else ()
    wrong = [k for k in wanted if not 1 <= k < blocks]
    if wrong:
        raise ValueError(
            f"'task.options.depths' = {list(wanted)}: the model has {blocks} transformer "
            f"blocks; a depth student keeps 1 to {blocks - 1} of them. Got {wrong}."
        )
    return tuple(dict.fromkeys(wanted))
