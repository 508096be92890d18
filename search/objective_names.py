"""Which figures a study optimises: the ``[study] objectives`` setting.

``accuracy`` (validation, maximised) is always one; any of ``size_bytes`` (bytes of the packed
artifact), ``latency_ms`` (median latency) and ``bops`` (bit operations per example, see
:mod:`evaluators.cost`) are minimised beside it. Names are the result columns'. Whatever order
a study file lists them in, a study keeps them in the canonical order of :data:`DIRECTIONS`
(the order Optuna stores the values in), so reordering the list changes nothing.

A study records its objectives when it is created, as the study user attribute
``objectives`` and as Optuna's metric names, so everything that reads the storage alone
(``status``, ``report``, ``select``) ranks trials by them. A study recorded before the
setting existed has no attribute and optimised the three defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: Every objective a study may optimise, with its direction, in the canonical order.
DIRECTIONS: dict[str, str] = {
    "accuracy": "maximize",
    "size_bytes": "minimize",
    "latency_ms": "minimize",
    "bops": "minimize",
}
#: The objectives of a study that does not say (and of every study recorded before the setting).
DEFAULT_OBJECTIVES: tuple[str, ...] = ("accuracy", "size_bytes", "latency_ms")
#: Study user attribute holding a study's objectives (a list of names).
OBJECTIVES_ATTR = "objectives"


def check_objectives(names: Any, key: str = "study.objectives") -> tuple[str, ...]:
    """``names`` validated, in the canonical order.

    Raises:
        ValueError: not a list of known names, each once, holding ``accuracy`` and at least
            one of the others.
    """
    ok = (
        isinstance(names, (list, tuple))
        and all(isinstance(n, str) and n in DIRECTIONS for n in names)
        and len(set(names)) == len(names)
        and "accuracy" in names
        and len(names) >= 2
    )
    if not ok:
        others = ", ".join(repr(n) for n in DIRECTIONS if n != "accuracy")
        shown = list(names) if isinstance(names, (list, tuple)) else names
        raise ValueError(
            f"'{key}' must list 'accuracy' and at least one of {others}, each once. "
            f"Got {shown!r} instead."
        )
    return tuple(n for n in DIRECTIONS if n in names)


def directions(names: Sequence[str]) -> list[str]:
    """Optuna's directions (``"maximize"`` / ``"minimize"``) of ``names``, in order."""
    return [DIRECTIONS[n] for n in names]


def recorded_objectives(study: optuna.Study) -> tuple[str, ...] | None:
    """The objectives ``study`` recorded, or ``None`` when it recorded none."""
    stored = study.user_attrs.get(OBJECTIVES_ATTR)
    if stored is None:
        return None
    try:
        return check_objectives(stored)
    except ValueError:
        return None


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objectives ``study`` optimises: those it recorded, else the three defaults (a
    study recorded before the setting existed)."""
    return recorded_objectives(study) or DEFAULT_OBJECTIVES
