from __future__ import annotations

import pytest
import torch

from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress, compressible_layers
from spaces.pruning import magnitude_mask, pruned_count


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.3, 0.5, 0.9, 0.95])
def test_mask_prunes_exactly_the_requested_count_of_smallest_weights(ratio: float) -> None:
    w = torch.randn(37, 23, generator=torch.Generator().manual_seed(1))
    mask = magnitude_mask(w, ratio)
    k = round(ratio * w.numel())
    assert int((mask == 0).sum()) == k
    if 0 < k < w.numel():
        assert w[mask == 0].abs().max() <= w[mask == 1].abs().min()


def test_mask_count_is_exact_with_ties() -> None:
    w = torch.ones(10, 10)
    assert int((magnitude_mask(w, 0.33) == 0).sum()) == 33


def test_pruned_count_rejects_bad_ratio() -> None:
    with pytest.raises(ValueError, match=r"range \[0, 1\)"):
        pruned_count(10, 1.0)


@pytest.mark.parametrize("epochs", [0, 1])
def test_compress_keeps_exact_zeros_through_finetuning_and_leaves_model_alone(
    pool: StudentPool, epochs: int
) -> None:
    teacher = pool.task.model
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ratios = {"conv1": 0.25, "conv2": 0.5, "fc1": 0.9, "fc2": 0.1}
    config = CompressionConfig(bits=dict.fromkeys(ratios, 32), prune=ratios)
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=epochs), seed=0)
    for name, layer in compressible_layers(cand.model).items():
        w = layer.weight
        assert int((w == 0).sum()) == round(ratios[name] * w.numel()), name
    # the teacher was copied, never changed
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_quantized_and_pruned_weights_stay_on_grid_after_finetuning(pool: StudentPool) -> None:
    config = CompressionConfig(
        bits={"conv1": 8, "conv2": 4, "fc1": 3, "fc2": 6}, prune={"fc1": 0.8, "conv2": 0.5}
    )
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=1), seed=0)
    layers = compressible_layers(cand.model)
    for name, code in cand.codes.items():
        assert torch.equal(layers[name].weight, code.dequantize()), name
    fc1 = layers["fc1"].weight
    assert int((fc1 == 0).sum()) >= round(0.8 * fc1.numel())
    assert bool((fc1[cand.masks["fc1"] == 0] == 0).all())


def test_on_epoch_sees_each_finetuning_epoch_and_can_stop_it(pool: StudentPool) -> None:
    seen: list[int] = []

    class Stop(Exception):
        pass

    def hook(epoch: int, model: torch.nn.Module) -> None:
        seen.append(epoch)
        assert not model.training
        if epoch == 2:
            raise Stop

    config = CompressionConfig(bits={"fc1": 4})
    with pytest.raises(Stop):
        compress(pool, config, finetune=FinetuneSettings(epochs=5), seed=0, on_epoch=hook)
    assert seen == [1, 2]
