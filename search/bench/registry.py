"""Every benchmark of ``python -m search.bench``, by sub-command."""

from __future__ import annotations

from search.bench import (
    compression,
    early_stopping,
    efficientnet,
    minilm,
    predictor,
    ray_workers,
    report,
    samplers,
    study,
    teachers,
)
from search.bench.common import Benchmark

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        study.BENCHMARK,
        predictor.BENCHMARK,
        report.BENCHMARK,
        minilm.BENCHMARK,
        efficientnet.BENCHMARK,
        compression.BENCHMARK,
        samplers.BENCHMARK,
        early_stopping.BENCHMARK,
        ray_workers.BENCHMARK,
        teachers.BENCHMARK,
    )
}
