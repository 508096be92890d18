"""The one order of operations: student, structured, unstructured, quantization, recovery."""

from __future__ import annotations

import importlib

import pytest
import torch

from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress

# the package re-exports the function `compress`, which hides the module of the same name
compress_module = importlib.import_module("spaces.compress")

CONFIG = CompressionConfig(
    student="w0.5",
    bits={"conv1": 8, "conv2": 4, "fc1": 3, "fc2": 8},
    prune={"conv2": 0.4, "fc1": 0.7},
    channels={"conv2": 0.25, "fc1": 0.5},
    act_bits=8,
)


def test_steps_run_in_the_documented_order(
    pool: StudentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def spy(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapped

    student = pool.get("w0.5")
    monkeypatch.setattr(pool, "get", spy("student", pool.get))
    for attr, name in [
        ("prune_channels", "structured"),
        ("magnitude_mask", "unstructured"),
        ("quantize_weight", "quantize"),
        ("fit", "finetune"),
    ]:
        monkeypatch.setattr(compress_module, attr, spy(name, getattr(compress_module, attr)))
    monkeypatch.setattr(
        compress_module.activations,
        "calibrate",
        spy("calibrate", compress_module.activations.calibrate),
    )
    epochs: list[int] = []
    cand = compress(
        pool,
        CONFIG,
        finetune=FinetuneSettings(epochs=2),
        seed=0,
        on_epoch=lambda epoch, model: epochs.append(epoch),
    )
    collapsed = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert collapsed == [
        "student",
        "structured",
        "unstructured",
        "calibrate",  # activation ranges under the quantized weights, before fine-tuning
        "finetune",  # distilled, quantization-aware, masks kept
        "quantize",  # the exact stored integers
        "calibrate",  # ranges for those final weights
    ]
    assert epochs == [1, 2]
    # the student itself is untouched; the candidate is structurally smaller than it
    assert student.conv2.out_channels == 16 and cand.model.conv2.out_channels == 12
    assert cand.model.fc1.out_features == 16 and cand.model.fc2.in_features == 16


def test_unstructured_ratio_applies_to_the_structurally_pruned_layer(pool: StudentPool) -> None:
    cand = compress(pool, CONFIG, finetune=FinetuneSettings(epochs=1), seed=0)
    fc1 = cand.model.fc1.weight
    # exactly round(0.7 * numel) zeros of the *shrunk* layer, kept through fine-tuning
    assert int((fc1 == 0).sum()) == round(0.7 * fc1.numel())
    assert int((cand.model.conv2.weight == 0).sum()) >= round(0.4 * cand.model.conv2.weight.numel())
    # the weights lie on their quantization grid (3 bits: at most 7 levels per channel)
    for row in fc1:
        assert len(torch.unique(row)) <= 7
