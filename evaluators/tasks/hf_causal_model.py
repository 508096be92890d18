"""A Hugging Face causal language model as a module frontier can compress and export.

- :class:`CausalLM` takes token ids and returns one tensor, the logits (``return_dict=False``,
  no key/value cache, an all-ones attention mask: blocks have a fixed length and no padding;
  passing the mask also keeps Transformers off its packed-sequence detection, which uses
  ``torch.diff``, an operator the ONNX exporter lacks).
- GPT-2's projections are Transformers' ``Conv1D`` (``x @ W + b`` with ``W`` stored
  input x output); :func:`conv1d_to_linear` swaps each for the ``nn.Linear`` computing the
  same numbers (``W`` transposed), so the search finds and quantizes them.
- Tied input / output embeddings (GPT-2's ``lm_head`` shares ``wte``'s weight): the output
  projection becomes :class:`TiedHead`, which multiplies by the embedding table itself. The
  table stays one compressible layer, stored and counted once, as in the checkpoint; a
  quantized table is what both the lookup and the logits then use, as a deployed tied model
  would. (Giving the head its own copy would count the largest matrix twice and make the
  teacher larger than its checkpoint.)
- :func:`depth_student`: a shallower copy keeping some of the decoder blocks.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TiedHead(nn.Module):
    """Logits from the input embedding table (tied weights), holding no weight of its own.

    The embedding is referenced, not registered as a child, so it is named (and compressed,
    and packed) once, where the model's embedding lookup owns it.
    """

    embedding: nn.Embedding

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        object.__setattr__(self, "embedding", embedding)

    def forward(self, hidden: Tensor) -> Tensor:
        return F.linear(hidden, self.embedding.weight)


class CausalLM(nn.Module):
    """Token ids ``(rows, seq)`` in, next-token logits ``(rows, seq, vocab)`` out."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: Tensor) -> Tensor:
        out = self.lm(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            use_cache=False,
            return_dict=False,
        )
        return out[0]


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every Transformers ``Conv1D`` of ``model`` by the equal ``nn.Linear``, in place;
    returns how many were replaced."""
    from transformers.pytorch_utils import Conv1D

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, Conv1D)]
    for name, conv in found:
        n_in, n_out = conv.weight.shape
        linear = nn.Linear(n_in, n_out, bias=conv.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.T)
            if conv.bias is not None:
                linear.bias.copy_(conv.bias)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, linear)
    return len(found)


def tie_head(lm: Any) -> bool:
    """Make a tied output projection a :class:`TiedHead`; ``False`` when it is not tied."""
    inputs, outputs = lm.get_input_embeddings(), lm.get_output_embeddings()
    if outputs is None or outputs.weight is not inputs.weight:
        return False
    if getattr(outputs, "bias", None) is not None:
        raise ValueError(
            "'task.huggingface': the output projection is tied to the input embedding but has "
            "a bias; frontier handles tied heads without one."
        )
    lm.set_output_embeddings(TiedHead(inputs))
    return True


def load_causal_lm(path: Path) -> tuple[CausalLM, Any]:
    """The checkpoint at ``path`` as a float32 :class:`CausalLM` and its tokenizer, offline.

    Raises:
        ValueError: the folder holds no causal language model or no tokenizer.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    key = f"'task.huggingface' = {str(path)!r}"
    if not path.is_dir():
        raise ValueError(f"{key}: not a folder; give a checkpoint saved with save_pretrained.")
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32, attn_implementation="eager"
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{key}: no causal language model loads from it: {exc}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{key}: no tokenizer loads from it ({exc}); save the tokenizer with the model."
        ) from None
    conv1d_to_linear(lm)
    tie_head(lm)
    lm.config.use_cache = False
    return CausalLM(lm.eval()).eval(), tokenizer


def decoder_blocks(model: CausalLM) -> tuple[nn.Module, str]:
    """The module holding the decoder blocks' ``nn.ModuleList`` and that list's attribute."""
    base: Any = model.lm.base_model
    for attr in ("h", "layers", "blocks"):
        if isinstance(getattr(base, attr, None), nn.ModuleList):
            return base, attr
    raise ValueError(
        f"'task.options.students': cannot find the decoder blocks of "
        f"{type(model.lm).__name__} (no 'h', 'layers' or 'blocks' list); set students = []."
    )


def depth_student(teacher: CausalLM, keep: tuple[int, ...]) -> CausalLM:
    """A copy of ``teacher`` with decoder blocks ``keep`` only, in order, renumbered from 0
    (so each kept block's layer names are the teacher's names of its first blocks); the
    kept blocks start from the teacher's weights."""
    student = copy.deepcopy(teacher)
    base, attr = decoder_blocks(student)
    blocks = getattr(base, attr)
    setattr(base, attr, nn.ModuleList([blocks[i] for i in keep]))
    config = student.lm.config
    for name in ("n_layer", "num_hidden_layers"):
        if hasattr(config, name):
            setattr(config, name, len(keep))
    for i, block in enumerate(getattr(base, attr)):
        for m in block.modules():  # attention layers index a cache by it; keep it consistent
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = i
    return student.eval()


def spread(n: int, k: int) -> tuple[int, ...]:
    """``k`` of ``n`` block indices spread evenly, the first and the last included."""
    if k == 1:
        return (0,)
    return tuple(round(i * (n - 1) / (k - 1)) for i in range(k))
