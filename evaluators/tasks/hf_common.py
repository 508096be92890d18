"""Hugging Face checkpoint folders, read offline: shared by the ``[task] huggingface`` importers.

A checkpoint folder is what ``model.save_pretrained(folder)`` and
``tokenizer.save_pretrained(folder)`` write: ``config.json``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or their sharded forms) and the tokenizer's
files. Nothing is downloaded: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set before
Transformers is imported and every load passes ``local_files_only=True``. Errors a user can
fix are one-line ``ValueError`` naming ``task.huggingface``.

Also here: the content hash that names a task (cached students are keyed by it), untying
weights that two compressible layers share, and depth students (a copy of the model keeping
some of its transformer blocks).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from spaces.layers import compressible_layers, weight_of

EXTRA_HINT = 'install the optional extra: pip install -e ".[huggingface]"'
KEY = "task.huggingface"
#: Files that hold a checkpoint's weights (one of them must be there).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
#: Files a saved tokenizer leaves (one of them must be there: without any, Transformers 5
#: builds an empty-vocabulary tokenizer from the config alone instead of failing).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class HuggingFaceUnavailable(ImportError):
    """The ``huggingface`` extra (transformers, tokenizers) is not installed."""


def transformers_offline() -> ModuleType:
    """Transformers, imported with the hub switched off and its logging quiet.

    Raises:
        HuggingFaceUnavailable: transformers is not installed (the loader turns it into one
            line saying what to install).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise HuggingFaceUnavailable(
            f"a Hugging Face checkpoint needs the transformers package ({exc.name} is "
            f"missing); {EXTRA_HINT}"
        ) from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return transformers


def checkpoint_folder(path: str | os.PathLike[str], *, key: str = KEY) -> Path:
    """``path`` as a checkpoint folder: a directory with ``config.json`` and weights.

    Raises:
        ValueError: not a folder, or no ``config.json`` / weights in it.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(
            f"'{key}' = {str(path)!r} is not a folder; point it at a checkpoint folder "
            "written by save_pretrained."
        )
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"'{key}' = {str(path)!r} has no config.json; point it at a checkpoint folder "
            "written by save_pretrained."
        )
    if not any((folder / f).is_file() for f in (*WEIGHT_FILES, *WEIGHT_INDEXES)):
        raise ValueError(
            f"'{key}' = {str(path)!r} has no weights ({' or '.join(WEIGHT_FILES)}); save the "
            "model with save_pretrained."
        )
    return folder


def files_digest(paths: Iterable[Path], *, extra: Iterable[str] = ()) -> str:
    """Short sha256 of files' names and bytes (in the order given) and of ``extra`` strings."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:12]


def checkpoint_digest(folder: Path) -> str:
    """Short sha256 of every file directly in the checkpoint folder (config, weights,
    tokenizer), by name: the same folder content gives the same digest on every machine."""
    return files_digest(sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name))


def load_tokenizer(folder: Path, *, key: str = KEY) -> Any:
    """The checkpoint folder's own tokenizer (``local_files_only``).

    Raises:
        ValueError: the folder holds no tokenizer Transformers can read.
    """
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"'{key}' = {str(folder)!r}: no tokenizer in the folder (none of "
            f"{list(TOKENIZER_FILES[:3])}, ...); save it there with "
            "tokenizer.save_pretrained(folder)."
        )
    transformers = transformers_offline()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"'{key}' = {str(folder)!r}: no tokenizer could be loaded from the folder "
            f"({first}); save it there with tokenizer.save_pretrained(folder)."
        ) from None
    if getattr(tokenizer, "pad_token", None) is None:
        eos = getattr(tokenizer, "eos_token", None)
        if eos is None:
            raise ValueError(
                f"'{key}' = {str(folder)!r}: the tokenizer has neither a padding nor an "
                "end-of-sequence token; set tokenizer.pad_token and save it again."
            )
        tokenizer.pad_token = eos  # padded positions are masked out: any token will do
    return tokenizer


def load_model(auto_class: Any, folder: Path, *, key: str = KEY, **kwargs: Any) -> nn.Module:
    """``auto_class.from_pretrained(folder)`` offline, in float32 and eval mode.

    Raises:
        ValueError: the checkpoint does not load into ``auto_class``, or some of the model's
            weights are not in it (they would be random: a head the checkpoint never trained).
    """
    name = getattr(auto_class, "__name__", str(auto_class))
    try:
        model, info = auto_class.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"'{key}' = {str(folder)!r} does not load as {name}: {first}") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ValueError(
            f"'{key}' = {str(folder)!r}: the checkpoint lacks {len(missing)} weight(s) of "
            f"{name} ({shown}); they would be random. Check 'task.kind' or save the trained "
            "model with save_pretrained."
        )
    return model.float().eval()


def untie_shared_weights(model: nn.Module) -> list[tuple[str, str]]:
    """Give every compressible layer its own weight tensor, in place; returns the pairs
    ``(first layer, layer that shared its weight)`` that were untied.

    Tied weights (an output projection sharing the input embeddings) cannot be searched: each
    layer is quantized and pruned on its own, and the artifact stores each. After untying,
    the copies start equal and count twice in the size, which is what storing both costs.
    The config's ``tie_word_embeddings`` is switched off so that nothing ties them again.
    """
    seen: dict[int, str] = {}
    untied: list[tuple[str, str]] = []
    for name, layer in compressible_layers(model).items():
        weight = weight_of(layer)
        if id(weight) in seen:
            clone = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
            setattr(layer, "weight", clone)  # noqa: B010 (typed as a module attribute)
            untied.append((seen[id(weight)], name))
        else:
            seen[id(weight)] = name
    if untied:
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "tie_word_embeddings"):
                config.tie_word_embeddings = False
    return untied


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer blocks: of the ``nn.ModuleList`` whose entries are
    all of one class (two or more), the one holding the most parameters.

    Raises:
        ValueError: the model has no such list (no depth students then).
    """
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, module)
    if best is None:
        raise ValueError(f"{type(model).__name__} has no list of transformer blocks.")
    return best[1], best[2]


def keep_blocks(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A copy of ``model`` keeping transformer blocks ``keep`` (in that order), with their
    weights; the kept blocks are renumbered ``0..len(keep)-1``, so every layer name of the
    copy is a layer name of ``model``.

    The config (``num_hidden_layers`` and per-layer lists such as ``layer_types``) and the
    blocks' ``layer_idx`` attributes (key/value caches index by them) follow.
    """
    student = copy.deepcopy(model)
    name, blocks = transformer_blocks(student)
    total = len(blocks)
    if not keep or any(not 0 <= i < total for i in keep):
        raise ValueError(f"Blocks to keep {list(keep)} must be in 0..{total - 1}.")
    kept = nn.ModuleList([blocks[i] for i in keep])
    parent_name, _, attr = name.rpartition(".")
    parent = student.get_submodule(parent_name) if parent_name else student
    setattr(parent, attr, kept)
    for new, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                setattr(module, "layer_idx", new)  # noqa: B010
    configs = {id(c): c for m in student.modules() if (c := getattr(m, "config", None)) is not None}
    for config in configs.values():
        if getattr(config, "num_hidden_layers", None) == total:
            config.num_hidden_layers = len(keep)
        types = getattr(config, "layer_types", None)
        if isinstance(types, list) and len(types) == total:
            config.layer_types = [types[i] for i in keep]
    return student


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask, every row padded or truncated to ``max_length`` tokens
    (fixed shapes: the latency and the ONNX graph are for that length)."""
    enc = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return enc["input_ids"].to(torch.long), enc["attention_mask"].to(torch.long)
