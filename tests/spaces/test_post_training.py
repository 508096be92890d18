"""GPTQ as a candidate's post-training rounding (spaces.post_training, through compress)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from evaluators.cost import architecture_cost
from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress
from spaces.artifacts import load_candidate, save_candidate
from spaces.compress import Compressed
from spaces.deploy import to_torch_int8
from spaces.post_training import gptq_round, rounds_with_gptq
from spaces.quantization import weight_codes
from spaces.task import Split

LAYERS = ["conv1", "conv2", "fc1", "fc2"]
NO_FINETUNE = FinetuneSettings(epochs=0)


def _build(
    pool: StudentPool, rounding: str, *, finetune: FinetuneSettings = NO_FINETUNE, **kwargs: Any
) -> Compressed:
    """The digits CNN at 3 bits in every layer (unless ``bits`` says otherwise)."""
    kwargs.setdefault("bits", dict.fromkeys(LAYERS, 3))
    config = CompressionConfig(rounding=rounding, **kwargs)
    return compress(pool, config, finetune=finetune, seed=0)


def _val_outputs(pool: StudentPool, model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(*x) for x, _ in pool.task.val.batches(256)])


def _accuracy(pool: StudentPool, outputs: torch.Tensor) -> float:
    return float((outputs.argmax(1) == pool.task.val.targets).float().mean())


def test_gptq_distorts_the_outputs_much_less_than_nearest_at_3_bits(pool: StudentPool) -> None:
    before = {k: v.clone() for k, v in pool.get("teacher").state_dict().items()}
    reference = _val_outputs(pool, pool.get("teacher"))
    built = {r: _build(pool, r) for r in ("nearest", "gptq")}
    outputs = {r: _val_outputs(pool, c.model) for r, c in built.items()}
    mse = {r: float((o - reference).pow(2).mean()) for r, o in outputs.items()}
    # measured 0.076 (9.48 -> 0.72) on the digits CNN, per-channel scales, 256 calibration rows
    assert mse["gptq"] < 0.25 * mse["nearest"]
    acc = {r: _accuracy(pool, o) for r, o in outputs.items()}
    assert acc["gptq"] >= acc["nearest"] - 0.02  # measured 0.986 against 0.969
    # the cheap figures do not depend on rounding, and the size bound holds for both; the
    # packed sizes may differ: GPTQ zeroes the weights of inputs that never fire on the
    # calibration rows, and the sparse encodings store code-0 weights cheaply (measured
    # 13 676 B against nearest's 15 672 B)
    arch = architecture_cost(pool.get("teacher"), pool.task.example_input)
    bound = {r: arch.size_lower_bound(c.config) for r, c in built.items()}
    assert bound["gptq"] == bound["nearest"]
    assert all(bound[r] <= len(c.artifact) for r, c in built.items())
    assert arch.bops(built["gptq"].config) == arch.bops(built["nearest"].config)
    after = pool.get("teacher").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the pool's model untouched


def test_gptq_keeps_nearest_scales_and_pruned_zeros_and_is_deterministic(
    pool: StudentPool,
) -> None:
    kwargs: dict[str, Any] = {"granularity": "g32", "prune": {"conv2": 0.3, "fc1": 0.5}}
    gptq = _build(pool, "gptq", **kwargs)
    nearest = _build(pool, "nearest", **kwargs)
    for name in LAYERS:
        # MSE-clipped group scales, exactly as nearest rounding chose them; other codes
        assert torch.equal(gptq.codes[name].scale, nearest.codes[name].scale)
        assert not torch.equal(gptq.codes[name].q, nearest.codes[name].q)
        assert torch.equal(gptq.model.get_submodule(name).weight, gptq.codes[name].dequantize())
    for name, mask in gptq.masks.items():
        assert not gptq.codes[name].q[mask == 0].any()  # pruned weights stay zero
    assert gptq.artifact == _build(pool, "gptq", **kwargs).artifact


def test_gptq_artifact_loads_back_to_the_same_outputs(pool: StudentPool, tmp_path: Path) -> None:
    cand = _build(pool, "gptq", granularity="tensor", act_bits=8)
    loaded = load_candidate(save_candidate(cand, tmp_path / "cand"), pool.task)
    assert loaded.config.rounding == "gptq"
    x = pool.task.test.inputs[0]
    with torch.no_grad():
        assert float((loaded.model(x) - cand.model(x)).abs().max()) <= 1e-5


def test_gptq_calibrates_on_float_activations(pool: StudentPool) -> None:
    # activation quantizers come after rounding: the Hessians, hence the codes, ignore them
    floats = _build(pool, "gptq")
    int8 = _build(pool, "gptq", act_bits=8)
    assert all(torch.equal(floats.codes[n].q, int8.codes[n].q) for n in LAYERS)


def test_gptq_with_finetuning_runs_and_packs(pool: StudentPool, tmp_path: Path) -> None:
    cand = _build(pool, "gptq", prune={"fc1": 0.5}, finetune=FinetuneSettings(epochs=1))
    for name, mask in cand.masks.items():
        assert not cand.codes[name].q[mask == 0].any()
    loaded = load_candidate(save_candidate(cand, tmp_path / "cand"), pool.task)
    x = pool.task.test.inputs[0]
    with torch.no_grad():
        assert float((loaded.model(x) - cand.model(x)).abs().max()) <= 1e-5


@pytest.mark.parametrize(
    ("layer", "bits", "expected"),
    [
        (nn.Linear(4, 3), 3, True),
        (nn.Conv2d(4, 8, 3), 8, True),
        (nn.Linear(4, 3), 16, False),
        (nn.Conv2d(4, 8, 3, groups=4), 4, False),  # grouped / depthwise: nearest
        (nn.Embedding(10, 4), 4, False),
        (nn.Conv1d(4, 8, 3), 4, False),
    ],
)
def test_which_layers_gptq_rounds(layer: nn.Module, bits: int, expected: bool) -> None:
    assert rounds_with_gptq(layer, bits) is expected


def test_a_layer_the_forward_pass_never_reaches_is_rounded_to_nearest() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 6)
    layers = {"used": model, "unused": nn.Linear(6, 6)}  # not called by model's forward
    config = CompressionConfig(bits={"used": 3, "unused": 3}, rounding="gptq")
    train = Split((torch.randn(32, 6),), torch.zeros(32))
    codes = gptq_round(model, layers, {}, config, train, batch_size=8)
    assert set(codes) == {"used"}
    assert torch.equal(model.weight, codes["used"].dequantize())


def test_gptq_candidate_deploys_with_its_own_codes(pool: StudentPool) -> None:
    cand = _build(pool, "gptq", bits=dict.fromkeys(LAYERS, 4), act_bits=8)
    for name in LAYERS:  # the int8 runtimes and ONNX export rebuild exactly GPTQ's codes
        code = weight_codes(cand.model.get_submodule(name))
        assert code is not None and torch.equal(code.q, cand.codes[name].q)
    int8 = to_torch_int8(cand.model)
    x = pool.task.test.inputs[0]
    with torch.no_grad():
        ref, out = cand.model(x), int8(x)
    assert float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99


def test_codes_of_an_earlier_build_are_reused_not_rounded_again(
    pool: StudentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # early stopping builds rung 0 (no fine-tuning), then the fine-tuned candidate: GPTQ once
    kwargs: dict[str, Any] = {"granularity": "g32", "prune": {"fc1": 0.5}}
    first = _build(pool, "gptq", **kwargs)
    assert set(first.rounded) == set(LAYERS)
    fresh = _build(pool, "gptq", finetune=FinetuneSettings(epochs=1), **kwargs)
    module = importlib.import_module("spaces.compress")

    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("GPTQ ran again")

    monkeypatch.setattr(module, "gptq_round", refuse)
    config = CompressionConfig(rounding="gptq", bits=dict.fromkeys(LAYERS, 3), **kwargs)
    reused = compress(
        pool, config, finetune=FinetuneSettings(epochs=1), seed=0, rounded=first.rounded
    )
    assert reused.artifact == fresh.artifact  # the very same candidate
    assert all(torch.equal(reused.rounded[n].q, fresh.rounded[n].q) for n in LAYERS)
    assert _build(pool, "nearest").rounded == {}


def test_onepass_gptq_rounds_every_layer_from_one_pass_of_the_float_candidate(
    pool: StudentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _val_outputs(pool, pool.get("teacher"))
    module = importlib.import_module("spaces.post_training")
    calls: list[int] = []
    real = module._round_layer

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "_round_layer", counted)
    passes: list[int] = []
    teacher_forward = type(pool.get("teacher")).forward

    def forward(self: nn.Module, *args: Any) -> Any:
        passes.append(1)
        return teacher_forward(self, *args)

    monkeypatch.setattr(type(pool.get("teacher")), "forward", forward)
    onepass = _build(pool, "gptq-onepass")
    calibration_batches = len(passes)
    monkeypatch.undo()
    assert len(calls) == len(LAYERS)
    # one whole pass over the calibration rows (the sequential rounding makes one per layer)
    rows = min(256, len(pool.task.train))
    assert calibration_batches == -(-rows // pool.task.batch_size)
    nearest = _build(pool, "nearest")
    sequential = _build(pool, "gptq")
    mse = {
        name: float((_val_outputs(pool, c.model) - reference).pow(2).mean())
        for name, c in (("nearest", nearest), ("onepass", onepass), ("gptq", sequential))
    }
    # measured 9.48 (nearest), 0.70 (one pass), 0.72 (sequential) on the digits CNN at 3 bits
    assert mse["onepass"] < 0.25 * mse["nearest"]
    for name in LAYERS:  # nearest's scales, other codes
        assert torch.equal(onepass.codes[name].scale, nearest.codes[name].scale)
        assert torch.equal(
            onepass.model.get_submodule(name).weight, onepass.codes[name].dequantize()
        )
    # the first layer sees the same inputs either way: the same codes as sequential GPTQ
    assert torch.equal(onepass.codes["conv1"].q, sequential.codes["conv1"].q)
    assert not torch.equal(onepass.codes["fc2"].q, sequential.codes["fc2"].q)
