"""A digits-cnn task whose trials can be held on one Ray node, for the lost-node test.

``[task] factory = "tests.search.held_task:digits_cnn_held"``: the built-in digits-cnn task
(same name, same cached teacher and students) whose metric, in a process that has
``FRONTIER_TEST_HOLD_DIR`` in its environment (the workers of the one Ray node started with
it), notes the process in ``HOLD_DIR/pids/`` and, once ``HOLD_DIR/hold`` exists, writes
``HOLD_DIR/held`` and never returns: that trial is running when the test kills the node.
Everywhere else (the driver, the other node) it is plain accuracy.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch

from evaluators import ACCURACY, Metric, Task, WeightCache
from evaluators.tasks.digits import digits_cnn

HOLD_ENV = "FRONTIER_TEST_HOLD_DIR"


def digits_cnn_held(*, cache: WeightCache, seed: int = 0) -> Task:
    """digits-cnn, its metric held on the node whose workers have ``HOLD_ENV`` (see above)."""
    task = digits_cnn(cache=cache, seed=seed)
    return dataclasses.replace(task, metric=Metric(ACCURACY.name, _accuracy, per_row=_correct))


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    _hold_here()
    return ACCURACY.fn(outputs, targets)


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    _hold_here()
    if ACCURACY.per_row is None:
        raise TypeError("ACCURACY has no per-row scores")
    return ACCURACY.per_row(outputs, targets)


def _hold_here() -> None:
    folder = os.environ.get(HOLD_ENV)
    if not folder:
        return
    hold = Path(folder)
    (hold / "pids").mkdir(parents=True, exist_ok=True)
    (hold / "pids" / str(os.getpid())).touch()
    if not (hold / "hold").exists():
        return
    (hold / "held").write_text(str(os.getpid()))
    while True:  # until the node's processes are killed
        time.sleep(1)
