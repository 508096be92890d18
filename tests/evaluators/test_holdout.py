from __future__ import annotations

import torch

from evaluators import ACCURACY, Metric
from evaluators.holdout import bootstrap_interval


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_more_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 3, (2000,), generator=gen)
    right = torch.rand(2000, generator=gen) < 0.8
    logits = torch.nn.functional.one_hot(torch.where(right, targets, (targets + 1) % 3), 3)
    acc = ACCURACY(logits.float(), targets)
    low, high = bootstrap_interval(logits.float(), targets, ACCURACY)
    assert low < acc < high and low > 0.75 and high < 0.85
    low_s, high_s = bootstrap_interval(logits[:200].float(), targets[:200], ACCURACY)
    assert (high_s - low_s) > 2 * (high - low)  # ~sqrt(10) wider with 10x fewer rows
    # repeatable
    assert bootstrap_interval(logits.float(), targets, ACCURACY) == (low, high)


def test_metrics_without_per_row_scores_are_resampled_whole() -> None:
    metric = Metric("mean", lambda o, t: float(o.mean()))
    outputs = torch.linspace(0, 1, 101)
    low, high = bootstrap_interval(outputs, outputs, metric, resamples=300)
    assert low < 0.5 < high and high - low < 0.25
