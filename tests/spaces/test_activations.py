from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from evaluators import Split, Task, WeightCache
from spaces import (
    CompressionConfig,
    DistillationSettings,
    FinetuneSettings,
    StudentPool,
    activations,
    compress,
)
from spaces.activations import BUFFER, QMAX, activation_params, qparams
from spaces.deploy import to_onnx, to_torch_int8
from spaces.quantization import mark_quantized, quantize_weight

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


def _quantized(
    model: nn.Module, layers: list[nn.Module], bits: int = 8, qmax: int = QMAX
) -> nn.Module:
    for layer in layers:
        code = quantize_weight(layer.weight, bits)
        with torch.no_grad():
            layer.weight.copy_(code.dequantize())
        mark_quantized(layer, code)
        activations.attach(layer, qmax=qmax)
    return model.eval()


class _ConvNet(nn.Module):
    """conv -> ReLU6 -> conv -> ReLU (in place) -> conv; ``conv2``'s output is also added."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        h2 = self.conv2(h)
        h = self.act(h2) + h2  # conv2's output also feeds the add: full range
        return self.conv4(self.relu(self.conv3(h)))


def _calibrated(
    model: nn.Module, layers: list[nn.Module], x: torch.Tensor, bits: int = 8, qmax: int = QMAX
) -> nn.Module:
    torch.manual_seed(0)
    _quantized(model, layers, bits, qmax)
    activations.calibrate(model, layers, Split((x,), torch.zeros(len(x))))
    return model


def _pre_activation_range(model: nn.Module, name: str, x: torch.Tensor) -> tuple[float, float]:
    """``layer``'s float output range, as calibration sees it (every 8-bit hook off)."""
    seen: list[torch.Tensor] = []
    model = copy.deepcopy(model)
    for m in model.modules():
        m._forward_pre_hooks.clear()
        m._forward_hooks.clear()
    model.get_submodule(name).register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    with torch.no_grad():
        model(x)
    return float(seen[0].min()), float(seen[0].max())


def test_output_ranges_are_those_of_the_activation_after_the_layer() -> None:
    torch.manual_seed(0)
    model = _ConvNet()
    with torch.no_grad():  # pre-activations well beyond ReLU6's 6 and below 0
        model.conv1.weight.mul_(8.0)
    x = torch.randn(16, 3, 8, 8)
    layers = [model.conv1, model.conv2, model.conv3, model.conv4]
    _calibrated(model, layers, x)
    lo1, hi1 = _pre_activation_range(model, "conv1", x)
    assert lo1 < -1 and hi1 > 7
    s_out, z_out = activations.activation_params(model.conv1)[2:]
    assert z_out == 0 and abs(s_out * QMAX - 6.0) < 1e-5  # [0, 6], not [lo1, hi1]
    s3, z3 = activations.activation_params(model.conv3)[2:]
    lo3, hi3 = _pre_activation_range(model, "conv3", x)
    assert lo3 < 0 and z3 == 0 and abs(s3 * QMAX - hi3) < 1e-5  # ReLU: [0, max]
    # conv2 also feeds the residual add, conv4 is the output: full ranges
    for name in ("conv2", "conv4"):
        lo, hi = _pre_activation_range(model, name, x)
        assert activations.activation_params(model.get_submodule(name))[2:] == qparams(lo, hi)
    # the simulated output equals the activation of the float output, quantized
    seen: dict[str, torch.Tensor] = {}
    model.conv1.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    model.conv1.register_forward_hook(lambda m, a, o: seen.update(out=o))
    with torch.no_grad():
        model(x)
        raw = torch.nn.functional.conv2d(seen["x"], model.conv1.weight, model.conv1.bias, padding=1)
    expected = activations.fake_quantize_activation(torch.clamp(raw, 0, 6), s_out, z_out)
    assert torch.equal(model.act(seen["out"]), expected)


def test_linear_followed_by_relu_and_hardtanh() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Hardtanh(-1.0, 0.5))
    x = torch.randn(64, 6) * 4
    found = activations.clipping_activations(model, [model[0], model[2]], (x[:2],))
    assert found == {id(model[0]): (0.0, math.inf), id(model[2]): (-1.0, 0.5)}
    _calibrated(model, [model[0], model[2]], x)
    lo, hi = _pre_activation_range(model, "2", x)
    assert lo < -1 and hi > 0.5
    assert activations.activation_params(model[2])[2:] == qparams(-1.0, 0.5)


# codes 0-255 with 7-bit weights (codes within +-63): no uint8 x int8 pair sum reaches 2^15, so
# the kernels compute the simulation on every x86 CPU, VNNI or not
@pytest.mark.parametrize(("bits", "qmax"), [(8, 127), (7, 255)])
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_int8_forms_compute_the_simulation(
    runtime: str, bits: int, qmax: int, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 1),
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(16 * 36, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )
    with torch.no_grad():
        model[0].weight.mul_(6.0)
    x = torch.randn(32, 3, 6, 6)
    layers = [model[0], model[2], model[5], model[7]]
    _calibrated(model, layers, x, bits, qmax)
    assert activations.activation_params(model[0])[3] == 0
    assert all(activations.activation_qmax(m) == qmax for m in layers)
    x = torch.randn(32, 3, 6, 6) * 1.5  # beyond the calibrated ranges: the grids saturate
    with torch.no_grad():
        ref = model(x)
    if runtime == "torch":
        with torch.no_grad():
            out = to_torch_int8(model)(x)
    else:
        data = to_onnx(model, (x[:1],), int8=True, kernels_only=True)
        options = ort.SessionOptions()  # graph optimisation on: integer kernels
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        out = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
        assert ops.count("QLinearConv") == 2 and "Conv" not in ops
        float_clips = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "Relu"]
        assert not float_clips  # the ReLU's are exact on the layers' grids: dropped
    step = activations.activation_params(model[7])[2]
    assert (out - ref).abs().max() <= 2 * step + 1e-6


def test_mse_range_clips_a_heavy_tail_for_a_finer_grid() -> None:
    torch.manual_seed(0)
    values = torch.distributions.StudentT(2.0).sample((20_000,))  # a heavy tail both ways
    lo0, hi0 = float(values.min()), float(values.max())
    lo, hi = activations.mse_range(values, lo0, hi0)
    assert lo0 < lo < 0 < hi < hi0  # the tails are clipped

    def err(a: float, b: float) -> float:
        s, z = qparams(a, b)
        return float((activations.fake_quantize_activation(values, s, z) - values).pow(2).sum())

    assert err(lo, hi) < 0.9 * err(lo0, hi0)
    # values spread evenly over their range: nothing to gain by clipping, the range stays
    even = torch.linspace(-2.0, 5.0, 10_000)
    assert activations.mse_range(even, -2.0, 5.0) == (-2.0, 5.0)


def test_mse_calibration_narrows_ranges_and_is_repeatable() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 4))
    x = torch.distributions.Laplace(0.0, 1.0).sample((2560, 8))  # long-tailed inputs
    layers = [model[0], model[1]]
    ranges: dict[str, list[list[tuple[float, int, float, int]]]] = {}
    for method in ("minmax", "mse", "mse"):
        m = copy.deepcopy(model)
        targets = [m[0], m[1]]
        for layer in targets:
            activations.attach(layer)
        activations.calibrate(m, targets, Split((x,), torch.zeros(2560)), method=method)
        ranges.setdefault(method, []).append([activation_params(t) for t in targets])
    assert ranges["mse"][0] == ranges["mse"][1]  # seeded sample: the same ranges every time
    minmax_in, mse_in = ranges["minmax"][0][0][0], ranges["mse"][0][0][0]
    assert mse_in < minmax_in  # the first layer's input scale: the tails are clipped
    with pytest.raises(ValueError, match=r"space\.act_calibration"):
        activations.calibrate(model, layers, Split((x,), torch.zeros(2560)), method="max")


def test_full_activation_codes_use_the_uint8_range_and_reload_from_the_artifact(
    pool: StudentPool, tmp_path: Path
) -> None:
    from spaces.artifacts import load_candidate, save_candidate

    # 7-bit weights take the full range; fc2's 8-bit weights keep 0-127 (CompressionConfig
    # .act_codes_of: exact on CPUs without VNNI either way)
    bits = {**dict.fromkeys(LAYERS, 7), "fc2": 8}
    config = CompressionConfig(bits=bits, act_bits=8, act_codes=255)
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    fc1 = cand.model.fc1
    assert activations.activation_qmax(fc1) == 255
    assert activations.activation_qmax(cand.model.fc2) == QMAX
    seen: dict[str, torch.Tensor] = {}
    handle = fc1.register_forward_hook(lambda m, a, o: seen.update(inp=a[0]))
    x = pool.task.val.inputs[0][:64]
    with torch.no_grad():
        out = cand.model(x)
    handle.remove()
    s_in, z_in, _, _ = activation_params(fc1)
    codes = seen["inp"] / s_in + z_in
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -1e-3 and codes.max() <= 255 + 1e-3
    assert codes.max() > QMAX + 0.5  # the calibrated range spans the full grid
    # a 0-255 grid over the same range: half the step of the default's
    default = dataclasses.replace(config, act_codes=QMAX)
    seven = compress(pool, default, finetune=FinetuneSettings(epochs=0), seed=0)
    assert activation_params(seven.model.fc1)[0] == pytest.approx(2 * s_in, rel=0.02)
    loaded = load_candidate(save_candidate(cand, tmp_path / "saved"), pool.task)
    assert loaded.config.act_codes == 255
    assert activations.activation_qmax(loaded.model.fc1) == 255
    assert activations.activation_qmax(loaded.model.fc2) == QMAX
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), out)


def test_the_vnni_target_gives_8_bit_layers_the_full_codes_in_the_artifact_too(
    pool: StudentPool, tmp_path: Path
) -> None:
    from spaces.artifacts import load_candidate, save_candidate

    bits = dict.fromkeys(LAYERS, 8)
    config = CompressionConfig(bits=bits, act_bits=8, act_codes=255, int8_target="vnni")
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    assert activations.activation_qmax(cand.model.fc2) == 255
    x86 = compress(
        pool,
        dataclasses.replace(config, int8_target="x86"),
        finetune=FinetuneSettings(epochs=0),
        seed=0,
    )
    assert activations.activation_qmax(x86.model.fc2) == QMAX
    loaded = load_candidate(save_candidate(cand, tmp_path / "saved"), pool.task)
    assert loaded.config.int8_target == "vnni"
    assert activations.activation_qmax(loaded.model.fc2) == 255
