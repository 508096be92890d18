from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import SizeEvaluator
from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress, unpack
from spaces.packing import pack_bits, unpack_bits


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
