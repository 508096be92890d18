"""Dynamic 8-bit activations: ONNX Runtime's DynamicQuantizeLinear, simulated and deployed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from search.spec import parse_spec
from spaces.artifacts import load_candidate, save_candidate
from spaces.cache import WeightCache
from spaces.compress import FinetuneSettings, compress
from spaces.config import DYNAMIC_MAX_WEIGHT_BITS, CompressionConfig
from spaces.deploy import int8_layers, to_onnx, to_torch_int8
from spaces.distillation import DistillationSettings, StudentPool
from spaces.dynamic_acts import (
    attach_dynamic,
    dynamic_eligible,
    dynamic_int8_layers,
    dynamic_quantize,
    fake_quantize_dynamic,
    has_dynamic_activations,
)
from spaces.layers import compressible_layers
from spaces.quantization import mark_quantized, quantize_weight
from spaces.space import SearchSpace, SpaceSettings
from tests.spaces.test_heads import X, tiny_task
from tests.studyfile import study_dict

FLOAT_ATOL = 1e-5  # the integer accumulation is exact: float summation order only


def _dql_session() -> ort.InferenceSession:
    outs = [("q", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8)]
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info(n, t, None) for n, t in outs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _tensors() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = [torch.zeros(7), torch.ones(5), -torch.ones(5), torch.tensor([0.5, -0.25, 1.5])]
    for i in range(60):
        x = torch.randn(300, generator=gen) * (0.01 + 3 * (i % 5)) + (i % 3 - 1)
        if i % 4 == 0:
            x = torch.round(x * 8) / 8  # many ties on the grid
        if i % 6 == 1:
            x = x.abs()
        if i % 6 == 2:
            x = -x.abs()
        out.append(x)
    return out


def test_the_simulated_codes_are_onnx_runtimes_dynamic_quantize_linear() -> None:
    session = _dql_session()
    for x in _tensors():
        q, scale, zero = session.run(None, {"x": x.numpy()})
        tq, ts, tz = dynamic_quantize(x)
        np.testing.assert_array_equal(tq.numpy().astype(np.uint8), q)
        assert float(ts) == float(scale) and int(tz) == int(zero)
        deq = fake_quantize_dynamic(x)
        np.testing.assert_array_equal(deq.numpy(), (q.astype(np.float32) - zero) * scale)


def test_gradients_pass_straight_through() -> None:
    x = torch.randn(4, 6, requires_grad=True)
    y = fake_quantize_dynamic(x)
    assert not torch.equal(y, x)
    (y * torch.arange(24.0).reshape(4, 6)).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.arange(24.0).reshape(4, 6))


def _token_mlp(bits: int = 4, granularity: str = "channel") -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    for layer in (model[0], model[2]):
        code = quantize_weight(layer.weight, bits, granularity=granularity)
        with torch.no_grad():
            layer.weight.copy_(code.dequantize())
        mark_quantized(layer, code)
        attach_dynamic(layer)
    return model.eval()


def _run(data: bytes, inputs: dict[str, np.ndarray], optimized: Path | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, inputs)[0]
    return out


@pytest.mark.parametrize(
    ("bits", "granularity"), [(4, "channel"), (7, "channel"), (5, "tensor"), (6, "g64")]
)
def test_onnx_integer_matmuls_reproduce_the_torch_candidate_on_3d_inputs(
    tmp_path: Path, bits: int, granularity: str
) -> None:
    model = _token_mlp(bits, granularity)  # g64: rows of 32 and 64 weights, one group each
    assert set(dynamic_int8_layers(model)) == {"0", "2"}
    x = torch.rand(5, 10, 32) * 6 - 2
    data = to_onnx(model, (x[:1],), int8=True, kernels_only=True)
    ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 2
    assert "MatMul" not in ops and "Gemm" not in ops
    out = _run(data, {"input": x.numpy()}, tmp_path / "opt.onnx")
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, atol=FLOAT_ATOL)
    fused = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "DynamicQuantizeMatMul" in fused and "MatMulInteger" not in fused
    # the float export keeps the same numbers: DynamicQuantizeLinear + DequantizeLinear
    plain = to_onnx(model, (x[:1],), int8=False)
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load_from_string(plain).graph.node}
    np.testing.assert_allclose(_run(plain, {"input": x.numpy()}), ref, atol=FLOAT_ATOL)
    # and the outputs differ from the weight-only model: the activations are quantized
    float_acts = nn.Sequential(*[m for m in model])
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer._forward_pre_hooks.clear()
        assert np.abs(float_acts(x).numpy() - ref).max() > 1e-3


def test_torch_int8_keeps_dynamic_layers_in_their_float_simulation() -> None:
    model = _token_mlp()
    assert not int8_layers(model)
    x = torch.rand(2, 3, 32)
    with torch.no_grad():
        assert torch.equal(to_torch_int8(model)(x), model(x))


def test_which_layers_take_dynamic_activations() -> None:
    lin, conv = nn.Linear(64, 8), nn.Conv2d(3, 4, 3)
    assert dynamic_eligible(lin, DYNAMIC_MAX_WEIGHT_BITS, "channel")
    assert dynamic_eligible(lin, 4, "tensor")
    # 8-bit codes with 0-255 inputs could saturate vpmaddubsw's int16 pair sums (no VNNI)
    assert not dynamic_eligible(lin, 8, "channel")
    assert not dynamic_eligible(lin, 32, "channel")
    assert not dynamic_eligible(conv, 4, "channel")
    assert not dynamic_eligible(lin, 4, "g32")  # two groups a row: no integer kernel
    assert dynamic_eligible(lin, 4, "g64")  # one group a row: per-channel scales
    config = CompressionConfig(bits={"a": 8, "b": 7, "c": 4}, act_bits=8, act_mode="dynamic")
    assert [config.act_bits_of(n) for n in "abcd"] == [32, 8, 8, 32]
    static = CompressionConfig(bits={"a": 8, "b": 7}, act_bits=8)
    assert [static.act_bits_of(n) for n in "ab"] == [8, 8]


def test_config_stored_form_names_the_mode_only_when_dynamic() -> None:
    old = CompressionConfig(bits={"fc": 4}, act_bits=8)
    assert "act_mode" not in old.to_dict()
    assert CompressionConfig.from_json(old.to_json()) == old
    dyn = CompressionConfig(bits={"fc": 4}, act_bits=8, act_mode="dynamic")
    assert json.loads(dyn.to_json())["act_mode"] == "dynamic"
    assert CompressionConfig.from_json(dyn.to_json()) == dyn
    assert dyn.restricted_to(["fc"]).act_mode == "dynamic"
    # float activations have no mode: one canonical config
    assert CompressionConfig(act_mode="dynamic") == CompressionConfig()
    with pytest.raises(ValueError, match="'act_mode' must be one of"):
        CompressionConfig(act_bits=8, act_mode="per-token")


def test_the_space_offers_the_mode_only_when_asked() -> None:
    layers = ["fc1", "fc2"]
    plain = SearchSpace(layers, ["teacher"], SpaceSettings(act_bits=(8, 32)))
    assert "act_mode" not in plain.distributions()
    assert plain.baselines()["uniform-int4"].act_mode == "static"
    fixed = SearchSpace(layers, ["teacher"], SpaceSettings(act_bits=(8,), act_mode=("dynamic",)))
    assert "act_mode" not in fixed.distributions()
    assert fixed.config_from_params({}).act_mode == "dynamic"
    assert fixed.baselines()["uniform-int4"].act_mode == "dynamic"
    both = SearchSpace(
        layers, ["teacher"], SpaceSettings(act_bits=(8, 32), act_mode=("static", "dynamic"))
    )
    assert both.distributions()["act_mode"].choices == ("static", "dynamic")  # type: ignore[attr-defined]
    config = both.config_from_params({"act_bits": 8, "act_mode": "dynamic", "bits.fc1": 4})
    assert config.act_mode == "dynamic" and both.contains(config)
    assert both.config_from_params(both.params_from_config(config)) == config
    assert not plain.contains(config)
    with pytest.raises(ValueError, match=r"space\.act_mode"):
        SpaceSettings(act_mode=("sometimes",))


def test_the_study_file_key_round_trips_through_the_stored_settings() -> None:
    spec = parse_spec(study_dict(space={"act_bits": [8], "act_mode": ["static", "dynamic"]}))
    assert spec.space.act_mode == ("static", "dynamic")
    assert parse_spec(spec.to_data()) == spec


@pytest.mark.slow
def test_a_tiny_bert_candidate_deploys_exactly_and_its_artifact_keeps_the_mode(
    tmp_path: Path,
) -> None:
    pool = StudentPool(tiny_task(), WeightCache(tmp_path / "c"), DistillationSettings(), seed=0)
    names = list(compressible_layers(pool.task.model))
    config = CompressionConfig(bits=dict.fromkeys(names, 4), act_bits=8, act_mode="dynamic")
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=1), seed=0)
    dynamic = dynamic_int8_layers(cand.model)
    linears = [n for n, m in compressible_layers(cand.model).items() if isinstance(m, nn.Linear)]
    assert linears and sorted(dynamic) == sorted(linears)
    with torch.no_grad():
        ref = cand.model(*X).numpy()
    data = to_onnx(cand.model, pool.task.example_input, int8=True, kernels_only=True)
    ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert ops.count("MatMulInteger") == len(linears)
    feed = {f"input{i}": t.numpy() for i, t in enumerate(X)}
    np.testing.assert_allclose(_run(data, feed), ref, atol=FLOAT_ATOL)

    loaded = load_candidate(save_candidate(cand, tmp_path / "cand"), pool.task)
    assert loaded.config == cand.config and loaded.config.act_mode == "dynamic"
    assert all(has_dynamic_activations(m) for m in dynamic_int8_layers(loaded.model).values())
    assert sorted(dynamic_int8_layers(loaded.model)) == sorted(dynamic)
    with torch.no_grad():
        assert torch.equal(loaded.model(*X), torch.from_numpy(ref))
