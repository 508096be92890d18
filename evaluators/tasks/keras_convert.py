"""A Keras model to ONNX, in a process of its own (``python -m evaluators.tasks.keras_convert``).

TensorFlow is never imported into frontier's own process: its thread pools do not survive
the ``fork`` of the latency isolation (a forked child hung), and it takes seconds and
hundreds of megabytes to import. :func:`evaluators.tasks.keras_import.keras_task` runs this
module as ``python -m evaluators.tasks.keras_convert SOURCE DEST``; a problem the user can fix
is one line on stderr (after :data:`MARK`) and exit code 2, a missing extra exit code 3.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Starts the line that carries the message on stderr (TensorFlow writes its own lines there).
MARK = "frontier-keras-convert: "
EXTRA_HINT = 'install the optional extra: pip install -e ".[tensorflow]"'


class KerasUnavailable(ImportError):
    """The ``tensorflow`` extra (tensorflow-cpu, tf2onnx) is not installed."""


def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        import keras
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise KerasUnavailable(
            f"a 'task.keras' model needs tensorflow and tf2onnx ({exc.name} is missing); "
            f"{EXTRA_HINT}"
        ) from None
    return keras


def keras_to_onnx(path: Path, dest: Path) -> None:
    """Write the Keras model (file or SavedModel folder) at ``path`` as ONNX to ``dest``.

    Raises:
        KerasUnavailable: the extra is not installed.
        ValueError: the model cannot be loaded or converted.
    """
    keras = _keras()
    if path.is_dir():
        _saved_model_to_onnx(path, dest)
        return
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        raise ValueError(f"'task.keras' = {str(path)!r}: Keras cannot load it ({exc}).") from None
    if not getattr(model, "_called", True):
        # Keras exports a model only after a call: one on zeros of its input shapes
        import numpy as np

        zeros = [
            np.zeros([1 if d is None else d for d in i.shape], dtype=i.dtype or "float32")
            for i in model.inputs
        ]
        model(zeros[0] if len(zeros) == 1 else zeros)
    try:
        model.export(str(dest), format="onnx", verbose=False)
    except Exception as exc:
        raise ValueError(
            f"'task.keras' = {str(path)!r}: Keras' ONNX export failed ({type(exc).__name__}: "
            f"{exc})."
        ) from None


def _saved_model_to_onnx(path: Path, dest: Path) -> None:
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    try:
        loaded = tf.saved_model.load(str(path))
        serving = loaded.signatures["serving_default"]
    except Exception as exc:
        raise ValueError(
            f"'task.keras' = {str(path)!r}: not a SavedModel with a 'serving_default' "
            f"signature ({exc})."
        ) from None
    specs = serving.structured_input_signature[1]
    names = sorted(specs)
    outputs = sorted(serving.structured_outputs)

    @tf.function(input_signature=[specs[n] for n in names])
    def serve(*args: Any) -> Any:
        result = serving(**dict(zip(names, args, strict=True)))
        return [result[k] for k in outputs]

    patch_tf2onnx()  # as Keras' own export does: tf2onnx with NumPy 2
    try:
        tf2onnx.convert.from_function(
            serve, input_signature=[specs[n] for n in names], output_path=str(dest)
        )
    except Exception as exc:
        raise ValueError(
            f"'task.keras' = {str(path)!r}: tf2onnx cannot convert the SavedModel "
            f"({type(exc).__name__}: {exc})."
        ) from None


def main(argv: list[str]) -> int:
    """Convert ``argv = [source, dest]``; 0 when written, 2 on a bad model, 3 without the extra."""
    source, dest = Path(argv[0]), Path(argv[1])
    try:
        keras_to_onnx(source, dest)
    except KerasUnavailable as exc:
        print(f"{MARK}{exc}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"{MARK}{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
