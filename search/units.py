"""Units in study files and on the command line: sizes, durations, latencies.

Each parser takes a number or a string with a unit and names the key it read in its message.
"""

from __future__ import annotations

import re
from typing import Any


class StudyFileError(ValueError):
    """A study file (or a command-line override) is wrong; the message says how to fix it."""


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(value: Any, key: str = "budget.max_size") -> int:
    """Bytes from an int or a string such as ``"20KB"`` (1000 bytes) or ``"1.5MiB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if m and m.group(2).upper() in _UNITS and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    raise StudyFileError(
        f'\'{key}\' must be a positive number of bytes or a string like "20KB", "1.5MiB" '
        f"(units B, KB, MB, GB, KiB, MiB). Got {value!r} instead."
    )


def parse_duration(value: Any, key: str = "study.timeout") -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"10m"``, ``"8h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _SECONDS[m.group(2) or "s"]
    raise StudyFileError(
        f'\'{key}\' must be a positive number of seconds or a string like "90s", "10m", '
        f'"8h". Got {value!r} instead.'
    )


_MILLISECONDS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def parse_latency(value: Any, key: str = "--max-latency") -> float:
    """Milliseconds from a number (taken as ms) or a string such as ``"0.5ms"``, ``"500us"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|us|µs|s)?\s*", value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _MILLISECONDS[m.group(2) or ""]
    raise StudyFileError(
        f"'{key}' must be a positive latency in milliseconds or a string like \"0.5ms\", "
        f'"500us", "2s". Got {value!r} instead.'
    )
