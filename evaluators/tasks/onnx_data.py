"""The data of a model from another framework: NumPy ``.npz`` files, read into splits.

One file (``data = "data.npz"``) holds every split under suffixed keys; a table
(``data = { train = "...", validation = "...", test = "..." }``) gives one file per split with
unsuffixed keys:

| what | one file | one file per split |
| --- | --- | --- |
| inputs of a one-input model | ``x_train``, ``x_validation``, ``x_test`` | ``x`` |
| inputs of a model taking several | ``x0_train``, ``x1_train``, ... | ``x0``, ``x1``, ... |
| targets | ``y_train``, ``y_validation``, ``y_test`` | ``y`` |

Inputs are in the model's own layout (an image model exported from Keras takes NHWC) and are
cast to the dtype of the graph input they feed. Targets: class labels (integers) for
``kind = "classification"``; reference outputs (float, one row per example) for ``"logits"``
and ``"embedding"``, where they may be left out: the model's own outputs are then the targets
(fidelity to the uncompressed model). Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def input_keys(n_inputs: int, suffix: str = "") -> list[str]:
    """The keys of a split's inputs: ``x`` for one input, ``x0``, ``x1``, ... for several."""
    if n_inputs == 1:
        return [f"x{suffix}"]
    return [f"x{i}{suffix}" for i in range(n_inputs)]


def _files(data: str | Mapping[str, str]) -> dict[str, tuple[Path, str]]:
    """Each split's file and key suffix."""
    if isinstance(data, str):
        return {s: (Path(data), f"_{s}") for s in SPLITS}
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise ValueError(
            f"'task.data' is a table without {missing}; give 'train', 'validation' and 'test' "
            "(or one file with every split)."
        )
    return {s: (Path(data[s]), "") for s in SPLITS}


def data_digest(data: str | Mapping[str, str]) -> str:
    """A short sha256 of the data files' bytes (part of the task's name and cache keys)."""
    h = hashlib.sha256()
    for split, (path, _) in _files(data).items():
        h.update(split.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()[:12]


def _load(path: Path) -> Mapping[str, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"'task.data': no file {str(path)!r}; point it at a .npz file.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"'task.data': {str(path)!r} is not a NumPy .npz file of arrays ({exc})."
        ) from None


def read_arrays(
    data: str | Mapping[str, str], n_inputs: int
) -> dict[str, tuple[list[np.ndarray], np.ndarray | None]]:
    """Each split's input arrays (in the model's input order) and targets (``None`` when the
    file has none).

    Raises:
        ValueError: a missing file or key, or inputs and targets of different lengths.
    """
    loaded: dict[Path, Mapping[str, np.ndarray]] = {}
    out: dict[str, tuple[list[np.ndarray], np.ndarray | None]] = {}
    for split, (path, suffix) in _files(data).items():
        arrays = loaded.setdefault(path, _load(path))
        keys = input_keys(n_inputs, suffix)
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise ValueError(
                f"'task.data': {str(path)!r} has no {missing} (it has {sorted(arrays)}); the "
                f"model takes {n_inputs} input(s): keys {keys} (README, 'ONNX files')."
            )
        inputs = [arrays[k] for k in keys]
        targets = arrays.get(f"y{suffix}")
        rows = {len(a) for a in inputs} | ({len(targets)} if targets is not None else set())
        if len(rows) != 1 or 0 in rows:
            raise ValueError(
                f"'task.data': the {split} arrays of {str(path)!r} must have the same, non-zero "
                f"number of rows; they have {sorted(rows)}."
            )
        out[split] = (inputs, targets)
    return out


def as_input(array: np.ndarray, dtype: torch.dtype, key: str) -> torch.Tensor:
    """An input array as a tensor of the graph input's dtype."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"'task.data': {key!r} holds {array.dtype}, not numbers.")
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


def class_labels(targets: np.ndarray, split: str, n_classes: int) -> torch.Tensor:
    """Integer class labels, checked against the model's number of outputs."""
    if targets.ndim != 1 or targets.dtype.kind not in "iuf":
        raise ValueError(
            f"'task.data': y of the {split} split must be one integer class per row for "
            f"'task.kind' = \"classification\"; it is {targets.dtype} of shape "
            f'{targets.shape}. Reference outputs need \'task.kind\' = "logits" or "embedding".'
        )
    if targets.dtype.kind == "f" and not np.all(np.mod(targets, 1) == 0):
        raise ValueError(f"'task.data': y of the {split} split holds non-integer class labels.")
    labels = torch.from_numpy(targets.astype(np.int64))
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"'task.data': y of the {split} split has labels from {int(labels.min())} to "
            f"{int(labels.max())}, but the model has {n_classes} outputs."
        )
    return labels


def reference_outputs(targets: np.ndarray, split: str, shape: Sequence[int]) -> torch.Tensor:
    """Float reference outputs of one row per example, shaped like the model's outputs."""
    if targets.dtype.kind != "f" or tuple(targets.shape[1:]) != tuple(shape):
        raise ValueError(
            f"'task.data': y of the {split} split must be float reference outputs of shape "
            f"(rows, {', '.join(map(str, shape))}) like the model's; it is {targets.dtype} of "
            f"shape {targets.shape}."
        )
    return torch.from_numpy(targets.astype(np.float32))
