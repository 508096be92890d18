"""Building a study's task: a built-in by name, or the user's own factory, then checked.

A study names its task in ``[task]`` as ``name = "digits-cnn"`` (built in) or
``factory = "package.module:function"`` (your own code, imported from an installed package or
``PYTHONPATH``). Either way the function is called with the ``[task.options]`` table as keyword
arguments, plus ``cache=``, ``seed=`` and ``device=`` (the study's resolved ``torch.device``,
where to train a teacher) when it declares parameters of those names, and must
return a :class:`evaluators.Task`. Whatever goes wrong ends in one ``ValueError`` line that
names the key and the problem; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from spaces.cache import WeightCache
from spaces.imports import import_object
from spaces.layers import COMPRESSIBLE_TYPES, compressible_layers
from spaces.task import Task

_SUPPORTED = ", ".join(f"nn.{t.__name__}" for t in COMPRESSIBLE_TYPES)


def load_task(
    *,
    name: str | None,
    factory: str | None,
    options: Mapping[str, Any],
    builtins: Mapping[str, Callable[..., Task]],
    cache: WeightCache,
    seed: int,
    device: torch.device | None = None,
    source: Mapping[str, Any] | None = None,
) -> Task:
    """Call the task's factory and check what it returns. ``source``: a model from another
    framework (``[task] onnx``, ``keras`` or ``huggingface``, :mod:`evaluators.tasks.importers`)
    instead of a name or a factory.

    Raises:
        ValueError: unknown name, factory not importable, factory failing or returning
            something else than a Task, or a model the search space cannot handle.
    """
    if source:
        return _import_task(source, options, cache=cache, seed=seed, device=device)
    if factory is not None:
        key = "task.factory"
        fn = import_object(factory, key=key)
        label = f"'{key}' = {factory!r}"
    else:
        key = "task.name"
        if name is None or name not in builtins:
            raise ValueError(
                f"Unknown task '{key}' = {name!r}; built-in tasks: {sorted(builtins)}."
            )
        fn = builtins[name]
        label = f"task {name!r}"
    kwargs = dict(options)
    params = _parameters(fn)
    extras: tuple[tuple[str, Any], ...] = (("cache", cache), ("seed", seed))
    if device is not None:  # not passed at all when there is none: factories default it
        extras += (("device", device),)
    for extra, value in extras:
        if extra in kwargs:
            raise ValueError(f"'task.options.{extra}' is reserved: frontier passes it itself.")
        if params is None or extra in params:
            kwargs[extra] = value
    try:
        task = fn(**kwargs)
    except TypeError as exc:
        if params is not None and _is_signature_error(fn, kwargs):
            raise ValueError(
                f"'task.options' do not fit {label}: {exc}. Its parameters: {sorted(params)}."
            ) from None
        raise ValueError(f"{label} raised TypeError: {exc}") from exc
    except ImportError as exc:
        raise ValueError(f"{label} cannot run: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{label} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(task, Task):
        raise ValueError(
            f"{label} returned {type(task).__name__}, not an evaluators.Task "
            "(model, train / val / test Split, metric, example input, students)."
        )
    check_task(task, label=label)
    return task


def _import_task(
    source: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    cache: WeightCache,
    seed: int,
    device: torch.device | None,
) -> Task:
    """A model from another framework, through its importer, checked like any task."""
    from evaluators.tasks.importers import importer_for

    key, fn = importer_for(source)
    label = f"'task.{key}' = {source[key]!r}"
    try:
        task = fn(
            source[key],
            data=source["data"],
            kind=source.get("kind"),
            options=dict(options),
            cache=cache,
            seed=seed,
            device=device,
        )
    except ImportError as exc:
        raise ValueError(f"{label} cannot run: {exc}") from None
    if not isinstance(task, Task):
        raise TypeError(f"the importer of {label} returned {type(task).__name__}, not a Task")
    check_task(task, label=label)
    return task


def _parameters(fn: Callable[..., Any]) -> set[str] | None:
    """Names ``fn`` accepts as keywords; ``None`` when it takes ``**kwargs`` or is opaque."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {
        n
        for n, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def _is_signature_error(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> bool:
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError:
        return True
    return False


def check_task(task: Task, *, label: str) -> None:
    """The model must be something the search can compress and run; raise ValueError if not.

    Checks: at least one compressible layer; no uninitialised (lazy) parameters; no weight
    shared by two compressible layers (quantizing one would change the other behind the
    packed size's back); ``example_input`` runs through the model and gives one finite
    tensor; every student builds and names its layers after the teacher's.
    """
    model = task.model
    layers = compressible_layers(model)
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        raise ValueError(
            f"{label}: the model has uninitialised (lazy) parameters; run one forward pass "
            "before returning it."
        )
    if not layers and isinstance(model, COMPRESSIBLE_TYPES):
        raise ValueError(
            f"{label}: the model is a bare nn.{type(model).__name__}; layers are addressed by "
            "name, so wrap it in a module (e.g. nn.Sequential) to give it one."
        )
    if not layers:
        others = sorted(
            {
                type(m).__name__
                for m in model.modules()
                if isinstance(getattr(m, "weight", None), torch.Tensor)
            }
        )
        found = f"; it has weights only in {others}" if others else ""
        raise ValueError(
            f"{label}: the model has no layer the search can compress (it handles "
            f"{_SUPPORTED}){found}."
        )
    seen: dict[int, str] = {}
    for layer_name, layer in layers.items():
        weight = layer.weight
        if id(weight) in seen:
            raise ValueError(
                f"{label}: layers {seen[id(weight)]!r} and {layer_name!r} share one weight "
                "tensor (tied weights); the search compresses each layer on its own and cannot "
                "handle that. Untie them or leave one out of the model."
            )
        seen[id(weight)] = layer_name
    if not isinstance(task.example_input, tuple) or not all(
        isinstance(t, torch.Tensor) for t in task.example_input
    ):
        raise ValueError(f"{label}: 'example_input' must be a tuple of tensors.")
    try:
        with torch.inference_mode():
            out = model(*task.example_input)
    except Exception as exc:
        raise ValueError(
            f"{label}: the model fails on its example_input: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"{label}: the model's forward must return one tensor (logits or embeddings), "
            f"not {type(out).__name__}."
        )
    if not bool(out.float().isfinite().all()):
        raise ValueError(f"{label}: the model's output on example_input is not finite.")
    teacher_layers = set(layers)
    for student_name, build in task.students.items():
        try:
            student = build()
        except Exception as exc:
            raise ValueError(
                f"{label}: student {student_name!r} cannot be built: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(student, nn.Module):
            raise ValueError(
                f"{label}: student {student_name!r} must build an nn.Module, not "
                f"{type(student).__name__}."
            )
        extra = sorted(set(compressible_layers(student)) - teacher_layers)
        if extra:
            raise ValueError(
                f"{label}: student {student_name!r} has layers the teacher lacks: {extra}. "
                "Name a student's layers after the teacher's."
            )
