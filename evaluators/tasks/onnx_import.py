"""``[task] onnx = "model.onnx"``: an ONNX file and its data as a frontier task.

The graph is converted to a PyTorch module by frontier's own converter
(:mod:`evaluators.tasks.onnx_convert`): Conv / Gemm / MatMul with constant weights become
``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` layers the search compresses, every other
operator runs as a torch function. The converted module is checked against ONNX Runtime on
validation rows before the task is returned. The data come from ``.npz`` files
(:mod:`evaluators.tasks.onnx_data`). A converted graph has no student architectures: the
search has bits, pruning and activation quantization (``space.custom_students`` still adds
students).

Options (``[task.options]``): ``output`` (the graph output to score, default the first),
``batch_size`` (training and evaluation batches, default 64).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluators.tasks import onnx_data
from evaluators.tasks.minilm import COSINE_FIDELITY
from evaluators.tasks.onnx_convert import OnnxModule, UnsupportedOperator, convert
from evaluators.tasks.onnx_values import DTYPES
from spaces.cache import WeightCache
from spaces.task import ACCURACY, TASK_KINDS, Split, Task

#: ``[task.options]`` keys of an imported model, and their types.
OPTIONS: dict[str, type] = {"output": str, "batch_size": int}
#: Rows of the validation split on which the converted module is compared with ONNX Runtime.
_CHECK_ROWS = 16


def check_options(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The options, checked against :data:`OPTIONS`."""
    for key, value in options.items():
        if key not in OPTIONS:
            raise ValueError(
                f"Unknown key 'task.options.{key}' for a 'task.{source}' model; allowed: "
                f"{sorted(OPTIONS)}."
            )
        if not isinstance(value, OPTIONS[key]) or isinstance(value, bool):
            raise ValueError(
                f"'task.options.{key}' must be {OPTIONS[key].__name__}. Got {value!r} instead."
            )
    if options.get("batch_size", 1) < 1:
        raise ValueError(f"'task.options.batch_size' must be >= 1. Got {options['batch_size']}.")
    return dict(options)


def load_onnx(path: str, key: str = "task.onnx") -> Any:
    """The ONNX model at ``path``."""
    import onnx

    if not Path(path).is_file():
        raise ValueError(f"'{key}': no file {path!r}.")
    try:
        return onnx.load(path)
    except Exception as exc:
        raise ValueError(f"'{key}' = {path!r} is not an ONNX model ({exc}).") from None


def onnx_task(
    path: str,
    *,
    data: str | Mapping[str, str],
    kind: str | None = None,
    options: Mapping[str, Any],
    cache: WeightCache,
    seed: int = 0,
    device: torch.device | None = None,
) -> Task:
    """The task of an ONNX file (see the module docstring)."""
    model = load_onnx(path)
    # the loaded model, external weight files included (torch writes model.onnx.data)
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()[:12]
    return task_from_onnx(
        model,
        key="task.onnx",
        label=path,
        name=f"onnx-{Path(path).stem}-{digest}",
        data=data,
        kind=kind,
        options=options,
    )


def task_from_onnx(
    model: Any,
    *,
    key: str,
    label: str,
    name: str,
    data: str | Mapping[str, str],
    kind: str | None,
    options: Mapping[str, Any],
) -> Task:
    """A task from an ONNX ``ModelProto`` (shared by the ONNX and Keras importers).

    Args:
        model: The ONNX model.
        key: The study-file key that named it (``"task.onnx"``, ``"task.keras"``).
        label: The path, for messages.
        name: The task name without the data digest (it identifies the model's content).
        data, kind, options: ``[task] data``, ``kind`` and ``[task.options]``.
    """
    kind = kind or "classification"
    if kind not in TASK_KINDS:
        raise ValueError(f"'task.kind' = {kind!r}: for '{key}' one of {list(TASK_KINDS)}.")
    opts = check_options(options, key.split(".")[1])
    try:
        module = convert(model, output=opts.get("output"))
    except UnsupportedOperator as exc:
        raise ValueError(
            f"'{key}' = {label!r}: {exc}; README \"ONNX files\" lists the supported operators."
        ) from None
    except ValueError as exc:
        raise ValueError(f"'{key}' = {label!r}: {exc} ('task.options.output').") from None
    dtypes = _input_dtypes(model, module)
    arrays = onnx_data.read_arrays(data, len(module.input_names))
    inputs = {
        split: tuple(
            onnx_data.as_input(a, dtype, f"x{i}")
            for i, (a, dtype) in enumerate(zip(xs, dtypes, strict=True))
        )
        for split, (xs, _) in arrays.items()
    }
    fixed = _fixed_batch(model, module)
    outputs = {split: _run(module, inputs[split], key, label, fixed) for split in inputs}
    _check_against_onnxruntime(model, module, inputs["validation"], outputs["validation"], key)
    splits = {}
    for split, (_, y) in arrays.items():
        out = outputs[split]
        if kind == "classification":
            if y is None:
                raise ValueError(
                    f"'task.data' has no y_{split} (class labels); give them, or set "
                    "'task.kind' = \"logits\" to score agreement with the model's own outputs."
                )
            if out.dim() != 2:
                raise ValueError(
                    f"'{key}': the model's output has shape {tuple(out.shape)}; a "
                    '"classification" task needs (rows, classes).'
                )
            targets = onnx_data.class_labels(y, split, out.shape[1])
        else:
            targets = out if y is None else onnx_data.reference_outputs(y, split, out.shape[1:])
        splits[split] = Split(inputs[split], targets)
    return Task(
        name=f"{name}-data-{onnx_data.data_digest(data)}",
        model=module,
        train=splits["train"],
        val=splits["validation"],
        test=splits["test"],
        example_input=tuple(t[:1] for t in splits["validation"].inputs),
        kind=kind,  # type: ignore[arg-type]
        metric=COSINE_FIDELITY if kind == "embedding" else ACCURACY,
        batch_size=opts.get("batch_size", 64),
    )


def _input_dtypes(model: Any, module: OnnxModule) -> list[torch.dtype]:
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    return [DTYPES.get(types.get(n, 1), torch.float32) for n in module.input_names]


def _fixed_batch(model: Any, module: OnnxModule) -> str:
    """A hint when a graph input has a fixed first dimension (an export without a dynamic
    batch), else ``""``."""
    for i in model.graph.input:
        dims = i.type.tensor_type.shape.dim
        if i.name in module.input_names and dims and dims[0].HasField("dim_value"):
            return (
                f"; its input {i.name!r} has a fixed batch size of {dims[0].dim_value}: export "
                "it with a dynamic batch dimension (torch.onnx.export(..., dynamic_shapes=...) "
                "or dynamic_axes=...)"
            )
    return ""


def _run(
    module: OnnxModule, inputs: tuple[torch.Tensor, ...], key: str, label: str, hint: str
) -> torch.Tensor:
    """The converted model's outputs on a split (float, on the CPU)."""
    outs = []
    n = len(inputs[0])
    try:
        with torch.inference_mode():
            for start in range(0, n, 256):
                outs.append(module(*(t[start : start + 256] for t in inputs)).float())
    except Exception as exc:
        raise ValueError(
            f"'{key}' = {label!r}: the model fails on the data ({type(exc).__name__}: {exc}); "
            f"'task.data' inputs must have the model's input shapes and layout{hint}."
        ) from None
    return torch.cat(outs)


def _check_against_onnxruntime(
    model: Any,
    module: OnnxModule,
    inputs: tuple[torch.Tensor, ...],
    outputs: torch.Tensor,
    key: str,
) -> None:
    """The converted module must compute what ONNX Runtime computes (a converter bug, or an
    operator read differently, would otherwise compress the wrong function)."""
    import onnxruntime as ort

    relaxed = copy.deepcopy(model)
    for value in (*relaxed.graph.input, *relaxed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:  # any batch size: the check runs several rows at once
            dims[0].dim_param = "batch"
    session = ort.InferenceSession(relaxed.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {n: t[:_CHECK_ROWS].numpy() for n, t in zip(module.input_names, inputs, strict=True)}
    wanted = [o.name for o in session.get_outputs()].index(module.output_name)
    ref = torch.from_numpy(np.asarray(session.run(None, feed)[wanted])).float()
    got = outputs[:_CHECK_ROWS]
    diff = float((ref - got).abs().max()) if ref.shape == got.shape else float("inf")
    if not diff <= 1e-4 * (1.0 + float(ref.abs().max())):
        raise ValueError(
            f"'{key}': the converted model differs from ONNX Runtime by {diff:.3g} on "
            f"validation rows (shapes {tuple(got.shape)} and {tuple(ref.shape)}); please "
            "report the model."
        )
