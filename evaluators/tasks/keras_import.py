"""``[task] keras = "model.keras"`` (or a SavedModel folder): a Keras model as a frontier task.

The model goes through ONNX into the ONNX importer (:mod:`evaluators.tasks.onnx_import`): a
``.keras`` / ``.h5`` file is loaded by Keras and written by Keras' own ONNX export
(``model.export(path, format="onnx")``, which runs tf2onnx on the model's traced function); a
SavedModel folder's ``serving_default`` signature is converted by tf2onnx. Keras models take
their inputs in their own layout (NHWC images): ``task.data`` holds them that way, and the
converted module takes what the graph takes. Needs the optional extra ``tensorflow``
(``pip install -e ".[tensorflow]"``: tensorflow-cpu and tf2onnx); the TensorFlow backend of
Keras is used whatever ``KERAS_BACKEND`` says elsewhere. The conversion runs in a process of
its own (:mod:`evaluators.tasks.keras_convert`): TensorFlow never loads into frontier's.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from evaluators.tasks.keras_convert import MARK, KerasUnavailable
from evaluators.tasks.onnx_import import load_onnx, task_from_onnx
from spaces.cache import WeightCache
from spaces.task import Task


def content_digest(path: Path) -> str:
    """A short sha256 of a file, or of every file of a folder (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def convert_in_subprocess(source: Path, dest: Path) -> None:
    """Run :mod:`evaluators.tasks.keras_convert` on ``source`` in a process of its own.

    Raises:
        KerasUnavailable: the ``tensorflow`` extra is missing.
        ValueError: the model cannot be loaded or converted (the converter's one line).
    """
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluators.tasks.keras_convert", str(source), str(dest)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    marked = [line[len(MARK) :] for line in done.stderr.splitlines() if line.startswith(MARK)]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    last = marked[-1] if marked else (lines[-1] if lines else f"exit code {done.returncode}")
    if done.returncode == 3:
        raise KerasUnavailable(last)
    if done.returncode == 2:
        raise ValueError(last)
    if done.returncode != 0 or not dest.is_file():
        raise ValueError(f"'task.keras' = {str(source)!r}: the conversion to ONNX failed ({last}).")


def keras_task(
    path: str,
    *,
    data: str | Mapping[str, str],
    kind: str | None = None,
    options: Mapping[str, Any],
    cache: WeightCache,
    seed: int = 0,
    device: torch.device | None = None,
) -> Task:
    """The task of a Keras model (see the module docstring)."""
    source = Path(path)
    if not source.exists():
        raise ValueError(f"'task.keras': no file or folder {path!r}.")
    with tempfile.TemporaryDirectory(prefix="frontier-keras-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        convert_in_subprocess(source, onnx_path)
        model = load_onnx(str(onnx_path), key="task.keras")
    return task_from_onnx(
        model,
        key="task.keras",
        label=path,
        name=f"keras-{source.stem}-{content_digest(source)}",
        data=data,
        kind=kind,
        options=options,
    )
