"""Checks of the search space's settings: each raises a ValueError naming the study key."""

from __future__ import annotations

from collections.abc import Sequence

from spaces.config import ALLOWED_BITS


def check_bits(where: str, bits: Sequence[int]) -> tuple[int, ...]:
    if not bits:
        raise ValueError(f"'{where}' must list at least one bit width.")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or b not in ALLOWED_BITS:
            raise ValueError(
                f"'{where}' must hold bit widths from {list(ALLOWED_BITS)} "
                f"(32 keeps float). Got {b!r} instead."
            )
    return tuple(sorted(set(bits)))


def check_choices(where: str, values: Sequence[object], allowed: Sequence[object]) -> tuple:
    if not values or any(isinstance(v, bool) or v not in allowed for v in values):
        raise ValueError(
            f"'{where}' must be a non-empty list of values from {list(allowed)}. "
            f"Got {list(values)!r} instead."
        )
    return tuple(dict.fromkeys(values))


def check_one(where: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"'{where}' must be one of {list(allowed)}. Got {value!r} instead.")


def check_prune_max(where: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"'{where}' must be a float in the range [0, 1). Got {value!r} instead.")
    return float(value)
