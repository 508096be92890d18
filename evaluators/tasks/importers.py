"""Models from other frameworks: ``[task] onnx``, ``keras`` or ``huggingface`` in a study file.

Each importer turns a model file (or a checkpoint folder) and its data into a
:class:`spaces.task.Task` whose model is a PyTorch module, so the rest of frontier (the search,
compression, evaluation, export) treats it like any other task:

- ``onnx``: an ONNX file, converted to PyTorch (:mod:`evaluators.tasks.onnx_import`);
- ``keras``: a ``.keras`` file or a SavedModel folder, exported to ONNX by Keras, then as
  ``onnx`` (:mod:`evaluators.tasks.keras_import`; extra ``tensorflow``);
- ``huggingface``: a Transformers checkpoint folder, by ``kind``:
  ``"sequence-classification"`` and ``"embedding"`` (:mod:`evaluators.tasks.hf_text`) and
  ``"causal-lm"`` (:mod:`evaluators.tasks.hf_causal`); extra ``huggingface``.

Every importer is called as ``importer(path, data=..., kind=..., options=..., cache=...,
seed=..., device=...)``: ``path`` is the model's absolute path, ``data`` an absolute path or a
``{"train" | "validation" | "test": path}`` table, ``kind`` the ``[task] kind`` or ``None``,
``options`` the ``[task.options]`` table. Importers raise ``ValueError`` naming the key
(``task.onnx``, ``task.data``, ``task.options.<key>``) for anything the user can fix.
Modules are imported only when a study asks for them (each may need an optional extra).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from spaces.task import Task

#: ``[task]`` key, and ``kind`` for Hugging Face -> ``"module:function"`` of the importer.
_IMPORTERS: dict[tuple[str, str | None], str] = {
    ("onnx", None): "evaluators.tasks.onnx_import:onnx_task",
    ("keras", None): "evaluators.tasks.keras_import:keras_task",
    ("huggingface", "sequence-classification"): "evaluators.tasks.hf_text:huggingface_text_task",
    ("huggingface", "embedding"): "evaluators.tasks.hf_text:huggingface_text_task",
    ("huggingface", "causal-lm"): "evaluators.tasks.hf_causal:causal_lm_task",
}
#: The ``kind`` values of a Hugging Face checkpoint, in the order messages list them.
HUGGINGFACE_KINDS: tuple[str, ...] = ("sequence-classification", "embedding", "causal-lm")


def importer_for(source: Mapping[str, Any]) -> tuple[str, Callable[..., Task]]:
    """The ``[task]`` key naming the model and the function that imports it.

    Raises:
        ValueError: a Hugging Face checkpoint without a known ``kind``.
    """
    key = next(k for k in ("onnx", "keras", "huggingface") if k in source)
    kind = source.get("kind")
    if key == "huggingface":
        if kind not in HUGGINGFACE_KINDS:
            raise ValueError(
                f"'task.kind' = {kind!r}: a Hugging Face checkpoint needs 'task.kind', one of "
                f"{list(HUGGINGFACE_KINDS)}."
            )
        target = _IMPORTERS[(key, kind)]
    else:
        target = _IMPORTERS[(key, None)]
    module_name, function = target.split(":")
    return key, getattr(importlib.import_module(module_name), function)
