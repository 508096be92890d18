"""Saving, loading and exporting a compressed candidate.

A saved candidate is a folder with two files:

- ``model.safetensors``: the packed artifact, byte for byte the one whose length is the
  candidate's ``size_bytes`` (see :mod:`spaces.packing`);
- ``config.json``: its :class:`~spaces.CompressionConfig` (student, channels, heads, pruning,
  bits, activation bits, granularity, rounding).

Loading needs the task the candidate was compressed from (its teacher or student constructors
give the architecture, its example input lets torch-pruning reshape it): the architecture is
built, shrunk to the stored channel and attention-head counts (which channels and heads go
does not matter: their weights are replaced), given its activation quantizers, and the
unpacked weights are loaded. The result computes exactly what the evaluated candidate computed.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spaces import activations, dynamic_acts
from spaces.config import TEACHER, CompressionConfig
from spaces.deploy import to_onnx
from spaces.heads import prune_structure
from spaces.layers import compressible_layers
from spaces.packing import unpack
from spaces.quantization import mark_quantized
from spaces.task import Task

ARTIFACT_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class LoadedCandidate:
    """A candidate read back from disk: the rebuilt model, its artifact and its config."""

    model: nn.Module
    artifact: bytes
    config: CompressionConfig


def save_candidate(candidate: object, folder: str | os.PathLike[str]) -> Path:
    """Write ``candidate``'s packed artifact and config into ``folder``; returns the folder.

    ``candidate`` is anything with ``artifact`` (bytes) and ``config`` (a CompressionConfig):
    a :class:`~spaces.Compressed` or a :class:`LoadedCandidate`.
    """
    artifact = getattr(candidate, "artifact", None)
    config = getattr(candidate, "config", None)
    if not isinstance(artifact, bytes) or not isinstance(config, CompressionConfig):
        raise TypeError("save_candidate needs an object with 'artifact' bytes and a 'config'.")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / ARTIFACT_FILE).write_bytes(artifact)
    (out / CONFIG_FILE).write_text(config.to_json() + "\n", encoding="utf-8")
    return out


def build_architecture(task: Task, config: CompressionConfig) -> nn.Module:
    """An untrained model shaped like ``config``'s candidate (student, channels, heads,
    quantizers)."""
    if config.student == TEACHER:
        model = copy.deepcopy(task.model)
    elif config.student in task.students:
        model = task.students[config.student]()
    else:
        raise ValueError(
            f"The artifact's student {config.student!r} is not a student of task "
            f"{task.name!r} (it has {sorted(task.students)})."
        )
    model.eval()
    prune_structure(model, config.channels, config.heads, task.example_input)
    if config.act_mode == "dynamic":  # no stored ranges: the hooks come from the config
        for layer in dynamic_acts.dynamic_layers_of(model, config).values():
            dynamic_acts.attach_dynamic(layer)
        return model
    for name, layer in compressible_layers(model).items():
        if config.act_bits_of(name) == 8:
            activations.attach(layer, qmax=config.act_codes_of(name))
    return model


def load_artifact(data: bytes, config: CompressionConfig, task: Task) -> nn.Module:
    """Rebuild the torch model a packed artifact holds (outputs equal the evaluated ones)."""
    art = unpack(data)
    if art.student != config.student:
        raise ValueError(
            f"The artifact holds student {art.student!r} but its config names {config.student!r}."
        )
    model = build_architecture(task, config)
    model.load_state_dict(art.state_dict, strict=True)
    layers = compressible_layers(model)
    for name, code in art.codes.items():
        mark_quantized(layers[name], code)
    return model.eval()


def load_candidate(folder: str | os.PathLike[str], task: Task) -> LoadedCandidate:
    """Read a folder written by :func:`save_candidate` back into a runnable candidate."""
    src = Path(folder)
    data = (src / ARTIFACT_FILE).read_bytes()
    config = CompressionConfig.from_json((src / CONFIG_FILE).read_text(encoding="utf-8"))
    return LoadedCandidate(model=load_artifact(data, config, task), artifact=data, config=config)


def export_onnx(
    candidate: object,
    path: str | os.PathLike[str],
    *,
    example_input: tuple[torch.Tensor, ...],
    int8: bool = False,
) -> Path:
    """Write ``candidate`` (or a model) as an ONNX file that runs in onnxruntime.

    Args:
        candidate: A compressed or loaded candidate (its ``model`` is exported) or a module.
        path: The ``.onnx`` file to write.
        example_input: One example batch (``task.example_input``); the batch size is dynamic.
        int8: Store integer layers' weights as int8 with ``DequantizeLinear`` (QDQ). With
            8-bit activations ONNX Runtime then runs them on int8 kernels. ``False`` stores
            float weights (the de-quantized values); activation Q/DQ pairs are kept either way.
    """
    model = candidate if isinstance(candidate, nn.Module) else getattr(candidate, "model", None)
    if not isinstance(model, nn.Module):
        raise TypeError("export_onnx needs a candidate with a 'model' or a torch module.")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_onnx(model, tuple(example_input), int8=int8))
    return out
