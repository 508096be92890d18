"""Deprecated: the runtimes moved to :mod:`evaluators.latency` (``evaluators/latency/runtimes.py``).

``from evaluators.runtimes import runner, time_model`` keeps working with a
``DeprecationWarning``; write ``from evaluators.latency import runner, time_model``.
"""

from __future__ import annotations

import warnings

from evaluators.latency.runtimes import (
    RUNTIMES,
    Prepare,
    Run,
    Runtime,
    get_runtime,
    rebuilt,
    runner,
    summarize,
    time_model,
    time_run,
)

warnings.warn(
    "'evaluators.runtimes' moved: import from 'evaluators.latency' instead "
    "(for example 'from evaluators.latency import runner, time_model').",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "RUNTIMES",
    "Prepare",
    "Run",
    "Runtime",
    "get_runtime",
    "rebuilt",
    "runner",
    "summarize",
    "time_model",
    "time_run",
]
