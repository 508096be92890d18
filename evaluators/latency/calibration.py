"""The calibration of a lookup-table sum against real forward passes: its model family and fit.

Operators in a chain run a little slower than alone (cold caches, fresh allocations, the
Python between them), so the prediction corrects the table's sum with a linear fit
``a * sum + g * operators + c`` (:func:`fit_calibration`), made once per table on a fixed
family of small synthetic MLPs and CNNs (:func:`calibration_models`) and the task's own
models, timed for real; :class:`evaluators.latency.predictor.LatencyPredictor` does the
timing and keeps the fit in its table.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from spaces.activations import QMAX, attach
from spaces.quantization import mark_quantized, quantize_weight


def int8_layer(layer: nn.Module) -> None:
    """Give ``layer`` 8-bit weights and activations in place (as a candidate's int8 layer has)."""
    code = quantize_weight(layer.weight.detach(), 8)  # type: ignore[operator]
    with torch.no_grad():
        layer.weight.copy_(code.dequantize())  # type: ignore[operator]
    mark_quantized(layer, code)
    mid = float((QMAX + 1) // 2)  # a range around zero, as calibration would give
    attach(layer, torch.tensor([4.0 / QMAX, mid, 8.0 / QMAX, mid]))


def calibration_models(batch_size: int, seed: int = 0) -> list[tuple[nn.Module, torch.Tensor]]:
    """A fixed family of small MLPs and 1-D / 2-D CNNs with their input batches.

    Every other model has some layers with 8-bit weights and activations, so the calibration
    sees the int8 kernels (and the quantize / dequantize around them) candidates run.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(options: list[int]) -> int:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    out: list[tuple[nn.Module, torch.Tensor]] = []
    for i in range(24):
        layers: list[nn.Module] = []
        if i % 3 == 0:
            widths = [pick([8, 16, 32, 64, 128, 256]) for _ in range(pick([2, 3, 4, 5]))]
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.ReLU()]
            x = torch.randn(batch_size, widths[0], generator=gen)
        elif i % 3 == 1:
            length, d = pick([20, 40, 80]), 1
            for _ in range(pick([2, 3, 4])):
                c = pick([4, 8, 16, 32])
                layers += [nn.Conv1d(d, c, 3, padding=1), nn.ReLU()]
                d = c
            layers += [nn.Flatten(), nn.Linear(d * length, 10)]
            x = torch.randn(batch_size, 1, length, generator=gen)
        else:
            side, d = pick([8, 12, 16]), 1
            for _ in range(pick([1, 2, 3])):
                c = pick([4, 8, 16])
                layers += [nn.Conv2d(d, c, 3, padding=1), nn.ReLU()]
                d = c
            layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(d * (side // 2) ** 2, 10)]
            x = torch.randn(batch_size, 1, side, side, generator=gen)
        model = nn.Sequential(*layers).eval()
        if i % 2 == 1:
            for layer in model:
                if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)) and pick([0, 1]):
                    int8_layer(layer)
        out.append((model, x))
    return out


def fit_calibration(
    rows: list[tuple[float, int, float]], weights: list[float] | None = None
) -> tuple[float, float, float]:
    """Weighted least squares on relative error: ``measured ~ a * table_sum + g * n_ops + c``."""
    x = torch.tensor([[lut, n, 1.0] for lut, n, _ in rows], dtype=torch.float64)
    y = torch.tensor([m for _, _, m in rows], dtype=torch.float64)
    w = torch.tensor(weights or [1.0] * len(rows), dtype=torch.float64) / y
    coef = torch.linalg.lstsq(x * w[:, None], (y * w)[:, None]).solution.flatten()
    a, g, c = (float(v) for v in coef)
    return a, g, c
