"""This machine: what latency figures are valid for, and where they are kept.

A latency table or a quiet floor measured on one machine says nothing about another, so each
is stored under a key naming the machine (:func:`machine_id`), in one cache folder
(:func:`cache_root`) shared by every study on the machine. Nothing here imports the other
latency modules: they all import this one.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

#: Environment variable naming the cache folder (default ``~/.cache/frontier``).
CACHE_DIR_ENV = "FRONTIER_CACHE_DIR"


def cache_root() -> Path:
    """Where latency tables and quiet floors live: ``$FRONTIER_CACHE_DIR/latency``, by default
    ``~/.cache/frontier/latency``. Read on every call, so a change of the variable counts."""
    base = os.environ.get(CACHE_DIR_ENV) or str(Path.home() / ".cache" / "frontier")
    return Path(base) / "latency"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_id() -> str:
    """CPU model, core count, OS and torch version: what a latency table is valid for."""
    return (
        f"{cpu_model()} | {os.cpu_count()} cpus | {platform.system()} | torch {torch.__version__}"
    )
