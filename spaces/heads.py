"""Attention-head pruning: whole heads removed from BERT-style attention blocks.

An *attention block* is a module laid out as in Hugging Face's BERT family (BERT, RoBERTa,
ELECTRA, MiniLM, ...): a child ``self`` holding the ``query``, ``key`` and ``value`` linear
layers and the ``num_attention_heads`` / ``attention_head_size`` / ``all_head_size``
attributes, and a child ``output`` whose ``dense`` linear layer reads the concatenated heads.
The search's ``heads.<block name>`` parameter is the fraction of the block's heads removed
(``round(ratio * heads)``, at least one head kept). torch's ``nn.MultiheadAttention`` is not
supported: its forward pass requires the heads to fill its ``embed_dim``, so it cannot run
with fewer of them.

Removing head ``h`` deletes its ``attention_head_size`` rows of ``query``, ``key`` and
``value`` (weights and biases) and the same columns of the output ``dense``, and lowers the
head count; the layers stay where they were, so the pruned model's layer names are the
teacher's. The pruned model computes exactly what the unpruned one computes with those heads
masked (their attention output set to zero).

Which heads go needs no data: the heads with the smallest L2 norm of all their weights
(their rows of ``query`` / ``key`` / ``value``, biases included, and their columns of the
output ``dense``), ties broken by position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spaces.structured import prune_channels, removed_count


@dataclass(frozen=True)
class AttentionBlock:
    """One attention block: the module holding the head count, its projections and output."""

    attention: nn.Module
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear

    @property
    def heads(self) -> int:
        return int(getattr(self.attention, "num_attention_heads"))  # noqa: B009

    @property
    def head_size(self) -> int:
        return int(getattr(self.attention, "attention_head_size"))  # noqa: B009


def _block(module: nn.Module) -> AttentionBlock | None:
    inner = getattr(module, "self", None)
    out = getattr(getattr(module, "output", None), "dense", None)
    if not isinstance(inner, nn.Module) or not isinstance(out, nn.Linear):
        return None
    proj = [getattr(inner, n, None) for n in ("query", "key", "value")]
    heads = getattr(inner, "num_attention_heads", None)
    size = getattr(inner, "attention_head_size", None)
    linears = [p for p in proj if isinstance(p, nn.Linear)]
    if len(linears) != 3 or not isinstance(heads, int) or not isinstance(size, int):
        return None
    width = heads * size
    if any(p.out_features != width for p in linears) or out.in_features != width:
        return None
    q, k, v = linears
    return AttentionBlock(attention=inner, query=q, key=k, value=v, output=out)


def attention_blocks(model: nn.Module) -> dict[str, AttentionBlock]:
    """The model's attention blocks keyed by fully-qualified name, in definition order."""
    blocks: dict[str, AttentionBlock] = {}
    for name, module in model.named_modules():
        block = _block(module)
        if name and block is not None:
            blocks[name] = block
    return blocks


def head_modules(model: nn.Module) -> list[str]:
    """Names of the attention blocks whose heads the search may remove (two heads or more)."""
    return [name for name, block in attention_blocks(model).items() if block.heads > 1]


def head_importance(block: AttentionBlock) -> torch.Tensor:
    """Each head's L2 norm over all its weights (q/k/v rows with biases, output columns)."""
    n, d = block.heads, block.head_size
    total = torch.zeros(n)
    with torch.no_grad():
        for lin in (block.query, block.key, block.value):
            total += lin.weight.detach().float().reshape(n, d, -1).pow(2).sum(dim=(1, 2)).cpu()
            if lin.bias is not None:
                total += lin.bias.detach().float().reshape(n, d).pow(2).sum(dim=1).cpu()
        w = block.output.weight.detach().float()
        total += w.reshape(w.shape[0], n, d).pow(2).sum(dim=(0, 2)).cpu()
    return total.sqrt()


def weakest_heads(block: AttentionBlock, ratio: float) -> list[int]:
    """The heads ``ratio`` removes: the least important, sorted; ties broken by position."""
    k = removed_count(block.heads, ratio)
    order = torch.argsort(head_importance(block), stable=True)
    return sorted(int(i) for i in order[:k])


def _keep_rows(lin: nn.Linear, index: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.detach()[index].clone())
    if lin.bias is not None:
        lin.bias = nn.Parameter(lin.bias.detach()[index].clone())
    lin.out_features = len(index)


def _keep_columns(lin: nn.Linear, index: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.detach()[:, index].clone())
    lin.in_features = len(index)


def remove_heads(block: AttentionBlock, heads: list[int]) -> None:
    """Delete ``heads`` (indices) from ``block`` in place; at least one head must remain."""
    n, d = block.heads, block.head_size
    gone = set(heads)
    if not gone:
        return
    if not gone <= set(range(n)) or len(gone) >= n:
        raise ValueError(f"Cannot remove heads {sorted(gone)} of {n}: keep at least one.")
    kept = [h for h in range(n) if h not in gone]
    index = torch.tensor([h * d + i for h in kept for i in range(d)], dtype=torch.long)
    for lin in (block.query, block.key, block.value):
        _keep_rows(lin, index.to(lin.weight.device))
    _keep_columns(block.output, index.to(block.output.weight.device))
    attention: Any = block.attention
    attention.num_attention_heads = len(kept)
    attention.all_head_size = len(kept) * d


def prune_heads(model: nn.Module, ratios: Mapping[str, float]) -> dict[str, int]:
    """Remove ``ratios[name]`` of each attention block's heads in place; returns heads kept.

    Blocks the model does not have are ignored (a shallower student has fewer); ratio 0
    leaves a block exactly as it is.
    """
    blocks = attention_blocks(model)
    kept: dict[str, int] = {}
    for name, ratio in ratios.items():
        block = blocks.get(name)
        if block is None or ratio <= 0:
            continue
        remove_heads(block, weakest_heads(block, ratio))
        kept[name] = block.heads
    return kept


def prune_structure(
    model: nn.Module,
    channels: Mapping[str, float],
    heads: Mapping[str, float],
    example_input: Any,
    *,
    importance: str = "l2",
) -> None:
    """Structured pruning in place, in :func:`spaces.compress.compress`'s order: channel
    groups, then attention heads (for rebuilding a candidate's shapes and costing them).

    Channels go first: their groups are found once per architecture (a cached lookup for the
    unpruned shapes). A BERT-style block's projections are in no channel group (their reshape
    into heads fixes their width), so the two never remove the same rows.
    """
    prune_channels(model, channels, example_input, importance=importance)
    prune_heads(model, heads)
