"""Which engine runs a study's trials, and the settings of the Ray Tune backend.

``local`` runs trials one after another in the ``frontier run`` process; ``ray`` runs them in
parallel through Ray Tune (:mod:`search.ray_backend`, the only module that imports ray).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

BACKENDS = ("local", "ray")


@contextmanager
def importing_ray_to_join(address: str | None) -> Iterator[None]:
    """Import :mod:`search.ray_backend` inside this block; ``address``: the cluster it will join.

    That module imports ray so that a local Ray listens on 127.0.0.1 only, which a process that
    joins a cluster must not do (its workers could not reach it). With an ``address``, ray is
    imported the default way (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1``, only during the block);
    with none, nothing changes.
    """
    key = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    if not address or key in os.environ:
        yield
        return
    os.environ[key] = "1"
    try:
        yield
    finally:
        del os.environ[key]


@dataclass(frozen=True)
class RaySettings:
    """The ``[ray]`` section.

    Attributes:
        cpus_per_trial: CPUs Ray reserves for each trial; torch's thread count follows it.
        workers: Trials run at once; 0 means as many as the cluster's CPUs allow
            (CPUs // cpus_per_trial).
        address: Address of an existing Ray cluster (``"auto"``, ``"ray://host:10001"`` or
            ``"host:6379"``); empty starts a local Ray on this machine.
        gpus_per_trial: GPUs Ray reserves for each trial (a fraction shares one GPU between
            trials); 0 reserves none. Trials then run on the GPU Ray gives them
            (``study.device``).
    """

    cpus_per_trial: int = 1
    workers: int = 0
    address: str = ""
    gpus_per_trial: float = 0

    def __post_init__(self) -> None:
        if isinstance(self.cpus_per_trial, bool) or not isinstance(self.cpus_per_trial, int):
            raise ValueError(
                f"'ray.cpus_per_trial' must be an int >= 1. Got {self.cpus_per_trial!r} instead."
            )
        if self.cpus_per_trial < 1:
            raise ValueError(
                f"'ray.cpus_per_trial' must be an int >= 1. Got {self.cpus_per_trial!r} instead."
            )
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(
                f"'ray.workers' must be an int >= 0 (0: as many as CPUs allow). "
                f"Got {self.workers!r} instead."
            )
        gpus = self.gpus_per_trial
        if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not gpus >= 0:
            raise ValueError(f"'ray.gpus_per_trial' must be a number >= 0. Got {gpus!r} instead.")

    def resources(self) -> dict[str, float]:
        """What Ray reserves for each trial: ``{"cpu": ..., "gpu": ...}`` (no GPU key at 0)."""
        reserved: dict[str, float] = {"cpu": self.cpus_per_trial}
        if self.gpus_per_trial > 0:
            reserved["gpu"] = self.gpus_per_trial
        return reserved

    def workers_for(self, cpus: float, gpus: float = 0.0) -> int:
        """Trials to run at once on a cluster with ``cpus`` CPUs (and ``gpus`` GPUs, which
        bound it too when trials reserve GPUs)."""
        if self.workers:
            return self.workers
        count = int(cpus // self.cpus_per_trial)
        if self.gpus_per_trial > 0:
            count = min(count, int(gpus // self.gpus_per_trial))
        return max(1, count)
