"""The device plumbing of spaces/: training, distillation, GPTQ, fine-tuning and sensitivity.

On a CPU-only machine the device is the CPU, where nothing may change: a pool given
``device=cpu`` builds exactly the candidates of one given none. That the device reaches every
piece of model work is checked by recording what each step is handed; the tests at the end
run the same work on a real GPU and are skipped where torch sees none.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import spaces.devices as devices
import spaces.distillation as distillation
import spaces.sensitivity.fisher as fisher
import spaces.sensitivity.measure as measure
import spaces.training as training
from evaluators import Task, WeightCache
from spaces import (
    CompressionConfig,
    DistillationSettings,
    FinetuneSettings,
    SensitivitySettings,
    StudentPool,
    compress,
    fit,
    measure_sensitivity,
    predict,
)
from spaces.devices import device_of, on_device, resolve_device, to_device
from spaces.pruning import magnitude_mask

#: ``spaces.compress`` the module (the package exports a function of that name)
compress_module = importlib.import_module("spaces.compress")
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")

#: Every step a candidate can take: GPTQ, 8-bit activations, pruning, fine-tuning.
FULL = CompressionConfig(
    student="w0.5",
    bits={"conv1": 4, "conv2": 4, "fc1": 4, "fc2": 8},
    prune={"fc1": 0.3},
    act_bits=8,
    rounding="gptq",
)


def _pool(task: Task, root: Path, device: torch.device | None) -> StudentPool:
    settings = DistillationSettings(epochs=2)
    return StudentPool(task, WeightCache(root), settings, seed=0, device=device)


def _record(monkeypatch: pytest.MonkeyPatch, module: object, name: str, calls: list[Any]) -> None:
    """Replace ``module.name`` with a wrapper that records its ``device`` keyword."""
    real: Callable[..., Any] = getattr(module, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append((name, kwargs.get("device")))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)


# --- resolving the setting --------------------------------------------------------------------


def test_the_setting_resolves_to_a_torch_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'study\.device' is 'cuda' but torch sees no CUDA"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"'study\.device' must be one of"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match=r"'study\.device' must be one of"):
        resolve_device("cuda:x")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"has 2 CUDA GPU\(s\).*set an index below 2"):
        resolve_device("cuda:2")


def test_the_same_device_moves_nothing() -> None:
    model = nn.Linear(3, 2)
    weight = model.weight
    data = weight.data_ptr()

    def no_move(*args: object, **kwargs: object) -> nn.Module:
        raise AssertionError("moved")

    model.to = no_move  # type: ignore[method-assign,assignment]
    with on_device(model, torch.device("cpu")) as same:
        assert same is model
    with on_device(model, None):
        pass
    assert model.weight is weight and model.weight.data_ptr() == data
    x = torch.ones(2, 3)
    assert to_device((x,), torch.device("cpu"))[0] is x
    assert to_device((x,), None)[0] is x
    assert device_of(nn.ReLU()) == torch.device("cpu")


# --- CPU: nothing changes ---------------------------------------------------------------------


def test_a_cpu_device_builds_the_very_same_candidates(digits_task: Task, tmp_path: Path) -> None:
    """The default (no device) and ``device=cpu``: the same students, codes and artifacts."""
    built = []
    for i, device in enumerate((None, torch.device("cpu"))):
        pool = _pool(digits_task, tmp_path / str(i), device)
        built.append(compress(pool, FULL, finetune=FinetuneSettings(epochs=1), seed=3))
    plain, on_cpu = built
    assert plain.artifact == on_cpu.artifact
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, on_cpu.model.state_dict()[key]), key
    assert device_of(on_cpu.model) == torch.device("cpu")


@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_a_cpu_device_measures_the_very_same_sensitivities(digits_task: Task, method: str) -> None:
    kwargs: dict[str, Any] = {
        "name": "teacher",
        "bits": {"fc1": [2, 4], "conv2": [4]},
        "prune_ratios": {"fc1": [0.5]},
        "channel_ratios": {"conv1": [0.5]},
        "granularity": "channel",
        "settings": SensitivitySettings(method=method, rows=64),
    }
    plain = measure_sensitivity(digits_task.model, digits_task, **kwargs)
    on_cpu = measure_sensitivity(
        digits_task.model, digits_task, device=torch.device("cpu"), **kwargs
    )
    assert plain.probes == on_cpu.probes


# --- every piece of model work is handed the device ---------------------------------------------


def test_the_pool_trains_and_calibrates_on_its_device(
    digits_task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    for name in ("fit", "predict"):
        _record(monkeypatch, distillation, name, calls)
    for name in ("fit", "gptq_round"):
        _record(monkeypatch, compress_module, name, calls)
    device = torch.device("cpu")
    pool = _pool(digits_task, tmp_path, device)
    compress(pool, FULL, finetune=FinetuneSettings(epochs=1), seed=0)
    assert [name for name, _ in calls] == ["predict", "fit", "gptq_round", "fit"]
    assert all(d is device for _, d in calls)  # teacher outputs, distillation, GPTQ, recovery


def test_sensitivity_probes_on_the_device(
    digits_task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    _record(monkeypatch, measure, "predict", calls)
    _record(monkeypatch, fisher, "gauss_newton_diagonal", calls)
    device = torch.device("cpu")
    for method in ("measured", "fisher"):
        measure_sensitivity(
            digits_task.model,
            digits_task,
            name="teacher",
            bits={"fc1": [4]},
            prune_ratios={},
            channel_ratios={"conv1": [0.5]},
            granularity="channel",
            settings=SensitivitySettings(method=method, rows=32),
            device=device,
        )
    names = [name for name, _ in calls]
    assert names == ["predict", "predict", "predict", "predict", "gauss_newton_diagonal"]
    assert all(d is device for _, d in calls)


def test_fit_and_predict_move_every_batch_to_the_device(
    digits_task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved: list[torch.device | None] = []
    placed: list[torch.device | None] = []
    real_to, real_on = devices.to_device, devices.on_device

    def recording_to(tensors: tuple[torch.Tensor, ...], device: torch.device | None) -> Any:
        moved.append(device)
        return real_to(tensors, device)

    def recording_on(model: nn.Module, device: torch.device | None) -> Any:
        placed.append(device)
        return real_on(model, device)

    monkeypatch.setattr(training, "to_device", recording_to)
    monkeypatch.setattr(training, "on_device", recording_on)
    rows = digits_task.train.head(100)
    model = copy.deepcopy(digits_task.model)
    device = torch.device("cpu")

    def loss(out: torch.Tensor, target: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, target)

    fit(model, rows, loss, epochs=2, lr=1e-3, batch_size=32, seed=0, device=device)
    assert placed == [device]
    assert len(moved) == 2 * 2 * 4  # inputs and targets of 4 batches, 2 epochs
    assert all(d == device for d in moved)
    moved.clear()
    out = predict(model, rows, batch_size=50, device=device)
    assert placed == [device, device] and moved == [device, device]
    assert out.device == torch.device("cpu") and out.shape == (100, 10)


# --- a real GPU (skipped without one) ---------------------------------------------------------


@needs_cuda
def test_cuda_training_leaves_the_model_on_the_cpu_and_trained(digits_task: Task) -> None:
    model = copy.deepcopy(digits_task.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].device))

    def loss(out: torch.Tensor, target: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        assert out.is_cuda and target.is_cuda
        return nn.functional.cross_entropy(out, target)

    fit(model, digits_task.train, loss, epochs=1, lr=1e-3, batch_size=64, seed=0, device=cuda())
    assert seen and all(d.type == "cuda" for d in seen)
    assert device_of(model) == torch.device("cpu")
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    on_gpu = predict(model, digits_task.val, device=cuda())
    on_cpu = predict(model, digits_task.val)
    assert on_gpu.device == torch.device("cpu")
    assert torch.allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)
    assert device_of(model) == torch.device("cpu")


def cuda() -> torch.device:
    device = resolve_device("cuda")
    devices.use_device(device)  # float32 as on the CPU (no TF32)
    return device


@needs_cuda
def test_cuda_candidates_are_packed_from_the_cpu(digits_task: Task, tmp_path: Path) -> None:
    """Distillation, GPTQ and fine-tuning on the GPU; the candidate and its codes on the CPU,
    and the weights the cache keeps load on a CPU-only pool under the same key."""
    pool = _pool(digits_task, tmp_path, cuda())
    built = compress(pool, FULL, finetune=FinetuneSettings(epochs=1), seed=3)
    assert device_of(built.model) == torch.device("cpu")
    assert all(c.q.device.type == "cpu" for c in built.codes.values())
    assert all(m.device.type == "cpu" for m in built.masks.values())
    assert built.artifact
    reloaded = _pool(digits_task, tmp_path, None).get("w0.5")  # cached by the GPU pool
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, pool.get("w0.5").state_dict()[key])
    from evaluators import AccuracyEvaluator

    acc = AccuracyEvaluator(digits_task, device=cuda()).evaluate(built)
    assert acc["accuracy"] > 0.5


@needs_cuda
@pytest.mark.parametrize("rounding", ["gptq", "gptq-onepass"])
def test_cuda_gptq_rounds_as_on_the_cpu(digits_task: Task, tmp_path: Path, rounding: str) -> None:
    config = CompressionConfig(student="teacher", bits={"fc1": 4, "conv2": 4}, rounding=rounding)
    codes = [
        compress(_pool(digits_task, tmp_path, d), config, finetune=FinetuneSettings(0), seed=0)
        for d in (None, cuda())
    ]
    assert set(codes[0].codes) == set(codes[1].codes) == {"fc1", "conv2"}
    for name, code in codes[0].codes.items():
        other = codes[1].codes[name]
        assert other.q.device.type == "cpu"
        assert torch.allclose(code.scale.float(), other.scale.float(), rtol=1e-2)
        # float sums in another order: a few codes may round the other way
        assert (code.q != other.q).float().mean() < 0.05


@needs_cuda
@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_cuda_sensitivities_agree_with_the_cpu(digits_task: Task, method: str) -> None:
    kwargs: dict[str, Any] = {
        "name": "teacher",
        "bits": {"fc1": [2, 4]},
        "prune_ratios": {"fc1": [0.5]},
        "channel_ratios": {"conv1": [0.5]},
        "granularity": "channel",
        "settings": SensitivitySettings(method=method, rows=64),
    }
    on_cpu = measure_sensitivity(digits_task.model, digits_task, **kwargs)
    on_gpu = measure_sensitivity(digits_task.model, digits_task, device=cuda(), **kwargs)
    assert device_of(digits_task.model) == torch.device("cpu")
    for a, b in zip(on_cpu.probes, on_gpu.probes, strict=True):
        assert (a.kind, a.layer, a.value) == (b.kind, b.layer, b.value)
        assert b.distortion == pytest.approx(a.distortion, rel=1e-2, abs=1e-6)


@needs_cuda
def test_cuda_masks_follow_their_weight() -> None:
    w = torch.randn(8, 8, device=cuda())
    mask = magnitude_mask(w, 0.5)
    assert mask.device == w.device and int((mask == 0).sum()) == 32
