from __future__ import annotations

import dataclasses

import torch

from evaluators import Split, Task, WeightCache
from spaces import CompressionConfig, DistillationSettings, FinetuneSettings, StudentPool, compress
from spaces.activations import BUFFER, QMAX, activation_params, qparams

LAYERS = ["conv1", "conv2", "fc1", "fc2"]
W8A8 = CompressionConfig(bits=dict.fromkeys(LAYERS, 8), act_bits=8)


def _params(task: Task, tmp_path, config: CompressionConfig = W8A8) -> dict[str, torch.Tensor]:
    pool = StudentPool(task, WeightCache(tmp_path), DistillationSettings(epochs=1), seed=0)
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    return {n: getattr(m, BUFFER).clone() for n, m in cand.model.named_modules() if n in LAYERS}


def _scaled(split: Split, factor: float) -> Split:
    return Split(tuple(t * factor for t in split.inputs), split.targets)


def test_calibration_uses_training_data_only(digits_task: Task, tmp_path) -> None:
    base = _params(digits_task, tmp_path / "a")
    # wildly different validation and test inputs change nothing ...
    other = dataclasses.replace(
        digits_task, val=_scaled(digits_task.val, 100.0), test=_scaled(digits_task.test, -50.0)
    )
    same = _params(other, tmp_path / "b")
    for name in LAYERS:
        assert torch.equal(base[name], same[name]), name
    # ... while different training inputs change the ranges
    train = dataclasses.replace(digits_task, train=_scaled(digits_task.train, 3.0))
    changed = _params(train, tmp_path / "c")
    assert changed["conv1"][0] > 2.5 * base["conv1"][0]  # input scale of the first layer


def test_ranges_cover_zero_and_the_uint8_grid() -> None:
    scale, zp = qparams(-1.0, 3.0)
    assert abs(scale - 4.0 / QMAX) < 1e-7 and zp == round(1.0 / scale)
    assert qparams(0.5, 2.0)[1] == 0  # zero stays representable: [0, 2]
    assert qparams(-2.0, -1.0)[1] == QMAX
    assert qparams(0.0, 0.0) == (1.0, 0)


def test_quantized_activations_lie_on_the_calibrated_grid(pool: StudentPool) -> None:
    cand = compress(pool, W8A8, finetune=FinetuneSettings(epochs=1), seed=0)
    seen: dict[str, torch.Tensor] = {}
    fc1 = cand.model.fc1
    handle = fc1.register_forward_hook(lambda m, a, o: seen.update(inp=a[0], out=o))
    with torch.no_grad():
        cand.model(pool.task.val.inputs[0][:32])
    handle.remove()
    s_in, z_in, s_out, z_out = activation_params(fc1)
    codes_in = seen["inp"] / s_in + z_in
    codes_out = seen["out"] / s_out + z_out
    for codes in (codes_in, codes_out):
        assert torch.allclose(codes, codes.round(), atol=1e-3)
        assert codes.min() >= -1e-3 and codes.max() <= QMAX + 1e-3


def test_float_layers_keep_float_activations(pool: StudentPool) -> None:
    config = CompressionConfig(bits={"conv1": 8, "fc1": 16}, act_bits=8)
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    assert hasattr(cand.model.conv1, BUFFER)
    assert not hasattr(cand.model.fc1, BUFFER) and not hasattr(cand.model.fc2, BUFFER)
