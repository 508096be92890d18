"""Structured pruning: whole output channels (convolutions) or neurons (linear layers) removed.

Layers whose channels must shrink together (a convolution and its BatchNorm, the branches of a
residual addition, the inputs of the next layer, the slices of a concatenation) form a
*group*; torch-pruning's dependency graph (DepGraph) finds the groups and removes the chosen
channels from every member, so the pruned model is physically smaller and runs faster.

A group is named after its first compressible layer in definition order (its *root*): the
search's ``channels.<root>`` parameter is the fraction of that group's channels removed.
Groups whose channel count the model's output depends on (the final classifier, a layer feeding
a fixed reshape) are never pruned: they are found by trying, on a copy, and seeing the output
shape change or the forward pass fail.

Which channels go is decided by an importance criterion, a study setting: ``"l1"`` or ``"l2"``
magnitude of every weight in the group that belongs to the channel (torch-pruning's
``GroupMagnitudeImportance``, averaged over the group's layers).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from spaces.layers import COMPRESSIBLE_TYPES, compressible_layers, weight_of
from spaces.task import Split

log = logging.getLogger("frontier")

#: Importance criteria a study may name, and the norm each takes of a channel's weights.
IMPORTANCES = {"l1": 1, "l2": 2}

_FN = ("prune_out_channels",)
#: Training rows whose inputs give the removed channels' means (bias correction).
BIAS_CORRECTION_ROWS = 256


def removed_count(channels: int, ratio: float) -> int:
    """How many of ``channels`` a ``ratio`` removes: ``round(ratio * channels)``, keeping one."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(
            f"The channel-pruning ratio must be in the range [0, 1). Got {ratio} instead."
        )
    return max(0, min(channels - 1, round(ratio * channels)))


def as_inputs(example_input: Any) -> tuple[torch.Tensor, ...]:
    """A model's example input as the tuple of positional arguments it is called with."""
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def _graph(model: nn.Module, example_input: tuple[torch.Tensor, ...]) -> tp.DependencyGraph:
    model.eval()
    return tp.DependencyGraph().build_dependency(
        model,
        example_inputs=list(example_input),
        forward_fn=lambda m, x: m(*x),
        verbose=False,
    )


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    return int(module.out_channels)  # type: ignore[arg-type]


def _prune_fn(module: nn.Module) -> Any:
    return (
        tp.prune_linear_out_channels
        if isinstance(module, nn.Linear)
        else tp.prune_conv_out_channels
    )


def _groups(model: nn.Module, dg: tp.DependencyGraph) -> dict[str, list[str]]:
    """Every coupled group, as root name -> names of the layers whose outputs shrink."""
    names = {id(m): n for n, m in compressible_layers(model).items()}
    order = {n: i for i, n in enumerate(names.values())}
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for group in dg.get_all_groups(ignored_layers=[], root_module_types=COMPRESSIBLE_TYPES):
        members = sorted(
            {
                names[id(dep.target.module)]
                for dep, _ in group
                if id(dep.target.module) in names and dep.handler.__name__ in _FN
            },
            key=order.__getitem__,
        )
        if not members or members[0] in seen:
            continue
        seen.update(members)
        groups[members[0]] = members
    return dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))


def _output_shapes(model: nn.Module, example_input: tuple[torch.Tensor, ...]) -> Any:
    with torch.no_grad():
        out = model(*example_input)
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(tuple(o.shape) for o in out if isinstance(o, torch.Tensor))
    return None


_GROUPS_CACHE: dict[Any, dict[str, list[str]]] = {}


def _signature(model: nn.Module) -> Any:
    shapes = [
        (name, type(m).__name__, tuple(p.shape))
        for name, m in model.named_modules()
        for p in m.parameters(recurse=False)
    ]
    return (type(model).__qualname__, *shapes)


def prunable_groups(model: nn.Module, example_input: Any) -> dict[str, list[str]]:
    """The groups whose channels the search may remove, root name -> member layer names.

    Computed on copies (the model is not changed) and remembered per architecture, so calling
    it for every trial costs a lookup.
    """
    inputs = as_inputs(example_input)
    key = (_signature(model), tuple(tuple(t.shape) for t in inputs))
    if key in _GROUPS_CACHE:
        return _GROUPS_CACHE[key]
    work = copy.deepcopy(model).eval()
    reference = _output_shapes(work, inputs)
    groups = _groups(work, _graph(work, inputs))
    keep: dict[str, list[str]] = {}
    for root, members in groups.items():
        trial = copy.deepcopy(model).eval()
        try:
            dg = _graph(trial, inputs)
            layer = compressible_layers(trial)[root]
            if _out_channels(layer) < 2:
                continue
            dg.get_pruning_group(layer, _prune_fn(layer), [0]).prune()
            if _output_shapes(trial, inputs) != reference:
                continue  # the model's output is sized by this group: never prune it
        except Exception as exc:  # a layer torch-pruning cannot shrink (fixed reshape, ...)
            log.debug("group %s is not prunable: %s", root, exc)
            continue
        keep[root] = members
    _GROUPS_CACHE[key] = keep
    return keep


def _weakest(dg: tp.DependencyGraph, layer: nn.Module, imp: Any, k: int) -> list[int]:
    """The ``k`` output channels of ``layer``'s group with the lowest importance, sorted;
    ties broken by position, so the choice is deterministic."""
    n = _out_channels(layer)
    scores = imp(dg.get_pruning_group(layer, _prune_fn(layer), list(range(n))))
    order = torch.argsort(scores.detach().float().cpu(), stable=True)
    return sorted(int(i) for i in order[:k])


def prune_channels(
    model: nn.Module,
    ratios: Mapping[str, float],
    example_input: Any,
    *,
    importance: str = "l2",
    calibration: Split | None = None,
    batch_size: int = 64,
) -> dict[str, int]:
    """Remove ``ratios[root]`` of each group's channels in place; returns channels kept.

    ``ratios`` is keyed by group root (as :func:`prunable_groups` names them); roots the model
    does not have, or whose group is fixed, are ignored. The channels with the smallest
    ``importance`` go; BatchNorm, residual partners, concatenations and the next layers'
    inputs shrink with them. Ratio 0 leaves the model exactly as it is.

    With ``calibration`` (training rows), the removed channels' mean contribution is kept:
    every layer that reads a removed channel (an ``nn.Linear`` or ``groups = 1`` ``Conv2d``
    with a bias) adds ``W[:, removed] @ mean(input[removed])`` to its bias, the input means
    measured on those rows just before the group is pruned (bias correction: the next layer's
    output keeps its mean, as a BatchNorm after it expects).
    """
    if importance not in IMPORTANCES:
        raise ValueError(
            f"'space.channel_importance' must be one of {sorted(IMPORTANCES)}. "
            f"Got {importance!r} instead."
        )
    inputs = as_inputs(example_input)
    wanted = {root: r for root, r in ratios.items() if r > 0}
    groups = prunable_groups(model, inputs) if wanted else {}
    todo = {root: r for root, r in wanted.items() if root in groups}
    kept: dict[str, int] = {}
    if not todo:
        return kept
    dg = _graph(model, inputs)
    imp = tp.importance.GroupMagnitudeImportance(p=IMPORTANCES[importance])
    layers = compressible_layers(model)
    for root, ratio in todo.items():
        layer = layers[root]
        n = _out_channels(layer)
        k = removed_count(n, ratio)
        if k > 0:
            group = dg.get_pruning_group(layer, _prune_fn(layer), _weakest(dg, layer, imp, k))
            shift = (
                {} if calibration is None else _kept_means(model, group, calibration, batch_size)
            )
            group.prune()
            with torch.no_grad():
                for consumer, delta in shift.items():
                    consumer.bias.add_(delta)  # type: ignore[operator]
        kept[root] = n - k
    return kept


def _readers(group: Any) -> dict[nn.Module, list[int]]:
    """The layers of a pruning ``group`` that lose input channels (and have a bias to
    correct), with those channels' indices."""
    readers: dict[nn.Module, list[int]] = {}
    for dep, idxs in group:
        module = dep.target.module
        if dep.handler.__name__ != "prune_in_channels":
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            continue
        if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
            readers[module] = sorted({int(i) for i in idxs})
    return readers


@torch.no_grad()
def _kept_means(
    model: nn.Module, group: Any, data: Split, batch_size: int
) -> dict[nn.Module, torch.Tensor]:
    """For each reader of the group's removed channels, ``W[:, removed] @ mean(input[removed])``
    (summed over a convolution's kernel), the input means taken over ``data``."""
    readers = _readers(group)
    if not readers:
        return {}
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = dict.fromkeys(readers, 0)

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().float()
        x = x.transpose(0, 1).flatten(1) if isinstance(module, nn.Conv2d) else x.flatten(0, -2).T
        sums[module] = sums.get(module, 0) + x.sum(dim=1)
        counts[module] += x.shape[1]

    handles = [m.register_forward_pre_hook(hook) for m in readers]
    was_training = model.training
    model.eval()
    try:
        for inputs, _ in data.batches(batch_size):
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    shift: dict[nn.Module, torch.Tensor] = {}
    for module, idx in readers.items():
        if module not in sums:
            continue  # the pass never reached it
        mean = sums[module][idx] / counts[module]
        full = weight_of(module).detach()
        weight = full.float()[:, idx]
        if isinstance(module, nn.Conv2d):
            weight = weight.sum(dim=(2, 3))
        shift[module] = (weight @ mean).to(full.dtype)
    return shift


def channel_roots(model: nn.Module, example_input: Any) -> list[str]:
    """Root names of the model's prunable groups, in definition order."""
    return list(prunable_groups(model, example_input))


def removed_channels(
    model: nn.Module, root: str, ratio: float, example_input: Any, *, importance: str
) -> dict[str, list[int]]:
    """Output channels that ``prune_channels(model, {root: ratio})`` removes, per compressible
    layer of the group (the sensitivity probes zero exactly these).

    Worked out on a copy (the model is not changed): the same graph, importance and tie
    breaking as :func:`prune_channels`.
    """
    inputs = as_inputs(example_input)
    work = copy.deepcopy(model).eval()
    layers = compressible_layers(work)
    layer = layers[root]
    k = removed_count(_out_channels(layer), ratio)
    if k == 0:
        return {}
    dg = _graph(work, inputs)
    imp = tp.importance.GroupMagnitudeImportance(p=IMPORTANCES[importance])
    names = {id(m): name for name, m in layers.items()}
    removed: dict[str, list[int]] = {}
    for dep, dep_idxs in dg.get_pruning_group(layer, _prune_fn(layer), _weakest(dg, layer, imp, k)):
        name = names.get(id(dep.target.module))
        if name is not None and dep.handler.__name__ == "prune_out_channels":
            removed[name] = sorted({int(i) for i in dep_idxs})
    return removed
