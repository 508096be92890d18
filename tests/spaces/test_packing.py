from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import SizeEvaluator
from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress, unpack
from spaces.config import GROUP_SIZES
from spaces.packing import pack_bits, unpack_bits
from spaces.quantization import scale_count


@given(st.integers(1, 8), st.lists(st.integers(0, 255), max_size=300))
@settings(max_examples=60, deadline=None)
def test_bit_packing_round_trips(width: int, raw: list[int]) -> None:
    values = np.array([v % (2**width) for v in raw], dtype=np.int64)
    data = pack_bits(values, width)
    assert len(data) == -(-len(values) * width // 8)
    assert np.array_equal(unpack_bits(data, width, len(values)), values)


CONFIGS = {
    "float": CompressionConfig(),
    "int8": CompressionConfig(bits=dict.fromkeys(["conv1", "conv2", "fc1", "fc2"], 8)),
    "mixed+sparse": CompressionConfig(
        bits={"conv1": 8, "conv2": 3, "fc1": 2, "fc2": 5},
        prune={"conv2": 0.5, "fc1": 0.95, "fc2": 0.3},
    ),
    "fp16+sparse": CompressionConfig(
        bits={"conv1": 16, "conv2": 32, "fc1": 16}, prune={"conv2": 0.7, "fc1": 0.99 - 0.04}
    ),
    "student": CompressionConfig(student="w0.5", bits={"fc1": 4, "conv2": 6}, prune={"fc1": 0.6}),
    "g64": CompressionConfig(
        bits={"conv1": 4, "conv2": 4, "fc1": 3, "fc2": 8}, prune={"fc1": 0.5}, granularity="g64"
    ),
    "g32+student": CompressionConfig(
        student="w0.5", bits={"fc1": 2, "conv2": 6}, prune={"fc1": 0.6}, granularity="g32"
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_artifact_round_trip_is_exact_and_size_is_bytes_written(
    pool: StudentPool, tmp_path, name: str
) -> None:
    cand = compress(pool, CONFIGS[name], finetune=FinetuneSettings(epochs=0), seed=0)
    path = tmp_path / "model.safetensors"
    path.write_bytes(cand.artifact)
    assert SizeEvaluator().evaluate(cand)["size_bytes"] == path.stat().st_size

    art = unpack(path.read_bytes())
    assert art.student == CONFIGS[name].student
    expected = cand.model.state_dict()
    assert set(art.state_dict) == set(expected)
    for key, value in expected.items():
        assert torch.equal(art.state_dict[key], value), key
    rebuilt = (
        pool.task.students[art.student]() if art.student != "teacher" else type(pool.task.model)()
    )
    rebuilt.load_state_dict(art.state_dict)
    x = pool.task.val.inputs[0][:64]
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), cand.model(x))


def test_sparse_layers_use_the_smallest_encoding(pool: StudentPool) -> None:
    config = CompressionConfig(
        bits={"conv1": 8, "conv2": 8, "fc1": 4, "fc2": 8}, prune={"fc1": 0.95, "conv2": 0.5}
    )
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    layers = unpack(cand.artifact).layers
    assert layers["fc1.weight"]["enc"] == "relidx"  # 5% dense: gaps beat a bitmask
    assert layers["conv1.weight"]["enc"] == "dense"
    # a denser pruned layer: the bitmask (1 bit a position) beats relative indices
    assert layers["conv2.weight"]["enc"] in ("bitmask", "relidx")
    dense = compress(
        pool, CompressionConfig(bits=dict(config.bits)), finetune=FinetuneSettings(0), seed=0
    )
    assert len(cand.artifact) < len(dense.artifact) * 0.6


def test_sizes_shrink_with_bits(pool: StudentPool) -> None:
    sizes = []
    for b in (32, 16, 8, 4, 2):
        config = CompressionConfig(bits=dict.fromkeys(["conv1", "conv2", "fc1", "fc2"], b))
        sizes.append(len(compress(pool, config, finetune=FinetuneSettings(0), seed=0).artifact))
    assert sizes == sorted(sizes, reverse=True)
    n_params = sum(p.numel() for p in pool.task.model.parameters())
    assert n_params * 4 < sizes[0] < n_params * 4 + 2048  # float32 plus a small header
    assert sizes[0] / sizes[3] > 6  # 4-bit codes, float16 scales and biases


def test_unpack_rejects_foreign_safetensors() -> None:
    from safetensors.torch import save

    with pytest.raises(ValueError, match="Not a frontier artifact"):
        unpack(save({"x": torch.zeros(3)}))


@pytest.mark.parametrize("granularity", ["g128", "g64", "g32"])
def test_group_codes_and_scales_round_trip_exactly(pool: StudentPool, granularity: str) -> None:
    config = CompressionConfig(
        bits={"conv1": 8, "conv2": 4, "fc1": 3, "fc2": 2},
        prune={"fc1": 0.7},
        granularity=granularity,
    )
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    art = unpack(cand.artifact)
    assert set(art.codes) == set(cand.codes)
    for name, code in cand.codes.items():
        back = art.codes[name]
        assert back.group_size == code.group_size == GROUP_SIZES[granularity]
        assert back.bits == code.bits
        assert torch.equal(back.q, code.q), name
        assert torch.equal(back.scale, code.scale), name  # every group's float16 scale
        assert torch.equal(back.dequantize(), code.dequantize()), name
        assert torch.equal(
            art.state_dict[f"{name}.weight"], cand.model.state_dict()[f"{name}.weight"]
        )
        assert art.layers[f"{name}.weight"]["g"] == GROUP_SIZES[granularity]
        assert art.layers[f"{name}.weight"]["s"] == scale_count(code.q.shape, granularity)
    # fc1 (64 x 512): one scale per row and group, all stored
    assert art.codes["fc1"].scale.shape == (64, 512 // GROUP_SIZES[granularity])


def test_only_group_wise_artifacts_take_the_new_format(pool: StudentPool) -> None:
    bits = {"conv1": 8, "conv2": 4, "fc1": 4, "fc2": 32}
    formats, grouped = {}, {}
    for granularity in ("channel", "tensor", "g64"):
        config = CompressionConfig(bits=bits, granularity=granularity)
        cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
        formats[granularity] = json.loads(_metadata(cand.artifact)["frontier"])["v"]
        grouped[granularity] = [k for k, r in unpack(cand.artifact).layers.items() if "g" in r]
    # a reader of format 1 refuses a group-wise artifact instead of misreading its scales
    assert formats == {"channel": 1, "tensor": 1, "g64": 2}
    assert grouped == {
        "channel": [],
        "tensor": [],
        "g64": ["conv1.weight", "conv2.weight", "fc1.weight"],
    }


def _metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + n])["__metadata__"])
