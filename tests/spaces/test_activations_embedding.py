"""8-bit activations on a model with an embedding: token ids pass through, the rows are quantized.

The embedding model comes from ``tests/spaces/embedding_task.py``, which a study file can also
name as its ``task.factory``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluators.latency.runtimes import runner
from spaces import CompressionConfig, DistillationSettings, FinetuneSettings, StudentPool, compress
from spaces.activations import QMAX, activation_params
from spaces.cache import WeightCache
from spaces.deploy import int8_layers
from tests.spaces.embedding_task import bag_of_tokens

W8A8 = CompressionConfig(bits={"emb": 8, "fc": 8}, act_bits=8)


@pytest.mark.parametrize("epochs", [0, 1])  # post-training, and quantization-aware fine-tuning
def test_token_ids_pass_through_and_the_embedding_output_is_on_its_grid(
    tmp_path: Path, epochs: int
) -> None:
    task = bag_of_tokens()
    pool = StudentPool(task, WeightCache(tmp_path), DistillationSettings(epochs=1), seed=0)
    cand = compress(pool, W8A8, finetune=FinetuneSettings(epochs=epochs), seed=0)
    ids = task.val.inputs[0]
    seen: dict[str, torch.Tensor] = {}
    handle = cand.model.emb.register_forward_hook(lambda m, a, o: seen.update(inp=a[0], out=o))
    with torch.no_grad():
        out = cand.model(ids)
    handle.remove()
    assert torch.equal(seen["inp"], ids)  # the ids themselves, not quantized codes
    s_in, z_in, s_out, z_out = activation_params(cand.model.emb)
    assert (s_in, z_in) == (1.0, 0)  # no range was calibrated on integer inputs
    codes = seen["out"] / s_out + z_out
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -1e-3 and codes.max() <= QMAX + 1e-3
    assert len(codes.round().unique()) > 4  # a real range, not a collapsed one
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("runtime", ["torch-int8", "onnxruntime"])
def test_a_model_with_an_embedding_deploys_to_int8_and_computes_what_was_evaluated(
    tmp_path: Path, runtime: str
) -> None:
    task = bag_of_tokens()
    pool = StudentPool(task, WeightCache(tmp_path), DistillationSettings(epochs=1), seed=0)
    cand = compress(pool, W8A8, finetune=FinetuneSettings(epochs=0), seed=0)
    assert list(int8_layers(cand.model)) == ["fc"]  # a lookup table has no int8 kernel
    ids = task.val.inputs[0]
    with torch.no_grad():
        expected = cand.model(ids)
    out = runner(runtime, cand.model, threads=1, example_input=(ids,))(ids)
    got = torch.as_tensor(out[0] if isinstance(out, list) else out)  # ONNX Runtime: a list
    _, _, s_out, _ = activation_params(cand.model.fc)
    # the same integers: the outputs agree to within a step or two of the output grid
    assert torch.allclose(got, expected, atol=2.5 * s_out)
