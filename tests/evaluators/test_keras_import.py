"""The Keras importer: a .keras file and a SavedModel folder become the same PyTorch model.

Keras models are built and saved by a separate Python process: TensorFlow never loads into
the test workers (it does not survive their forks), as it never loads into frontier's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.tasks.keras_import import keras_task
from spaces.cache import WeightCache
from spaces.layers import compressible_layers
from tests.conftest import REPO

HAS_TF = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras", "tf2onnx"))
# in CI the extra is installed (.ci/run): a missing package fails there instead of skipping
pytestmark = pytest.mark.skipif(
    not HAS_TF and os.environ.get("CI") != "true",
    reason='the tensorflow extra is not installed (pip install -e ".[tensorflow]")',
)

BUILD = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
import numpy as np

keras.utils.set_random_seed(0)
inputs = keras.Input((6, 6, 2), name="pixels")
h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)
h = keras.layers.BatchNormalization(name="bn")(h, training=False)
h = keras.layers.Activation("relu")(h)
h = keras.layers.GlobalAveragePooling2D()(h)
h = keras.layers.Dense(8, activation="tanh", name="hidden")(h)
outputs = keras.layers.Dense(3, name="head")(h)
model = keras.Model(inputs, outputs)
for layer in model.layers:  # weights a trained model would have: non-zero biases, BN stats
    layer.set_weights([np.random.default_rng(1).normal(size=w.shape) for w in layer.get_weights()])
bn = model.get_layer("bn")
gamma, beta, mean, var = bn.get_weights()
bn.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
rng = np.random.default_rng(2)
arrays = {}
for split in ("train", "validation", "test"):
    x = rng.normal(size=(10, 6, 6, 2)).astype("float32")
    arrays[f"x_{split}"] = x
    arrays[f"y_{split}"] = model.predict(x, verbose=0)
np.savez("data.npz", **arrays)
model.save("model.keras")
model.export("saved", format="tf_saved_model", verbose=False)
"""


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keras")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BUILD)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _task(path: Path, data: Path, kind: str = "logits"):
    return keras_task(
        str(path), data=str(data), kind=kind, options={}, cache=WeightCache("/nonexistent")
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", ["model.keras", "saved"])
def test_a_keras_model_converts_to_what_keras_computes(keras_files: Path, source: str) -> None:
    """The data's y are Keras' own predictions (NHWC inputs): the converted PyTorch module
    computes them; its Conv and Dense layers are compressible."""
    task = _task(keras_files / source, keras_files / "data.npz")
    with torch.no_grad():
        out = task.model(*task.test.inputs)
    np.testing.assert_allclose(out.numpy(), task.test.targets.numpy(), atol=1e-5)
    layers = compressible_layers(task.model)
    assert len(layers) == 3
    assert [type(m).__name__ for m in layers.values()] == ["Conv2d", "Linear", "Linear"]
    assert task.name.startswith(f"keras-{Path(source).stem}-")


def test_a_file_keras_cannot_load_is_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a keras archive")
    np.savez(tmp_path / "data.npz", x_train=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^'task.keras' = '.*model.keras': Keras cannot load"):
        _task(bad, tmp_path / "data.npz")
