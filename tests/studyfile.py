"""The one study-file builder of the tests: a tiny, valid study file from per-section overrides.

``study_toml(study={"n_trials": 4}, finetune={"epochs": 0})`` is the TOML text of the default
tiny study (digits-cnn, a handful of trials, few distillation and fine-tuning epochs, few
latency repeats) with those keys changed; ``write_study(folder, ...)`` writes it to
``folder/<study name>.toml``. Each keyword names a section (``study``, ``task``, ``space``,
``early_stopping``, ``storage``, ...); its dict is merged into the default section key by key
(nested tables too, e.g. ``space={"layers": {"conv1": {"bits": [4]}}}``), and ``None`` removes
a key or a whole section. ``defaults=False`` writes only the sections given (for files that
must stay minimal, such as bad input).

No TOML writer is a dependency, so :func:`dumps` is a small one for the types study files
use: strings, ints, floats, bools, lists of those, and nested tables.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The default tiny study. ``warm_weights`` (tests/search/_cluster.py) trains the teacher and
#: the ``w0.5`` student with these distillation settings, so studies built from the defaults
#: find their weights in a warmed cache.
DEFAULTS: dict[str, dict[str, Any]] = {
    "study": {"name": "tiny", "seed": 0, "n_trials": 6, "sampler": "tpe"},
    "task": {"name": "digits-cnn"},
    "space": {"students": ["teacher", "w0.5"]},
    "distillation": {"epochs": 3},
    "finetune": {"epochs": 1},
    "latency": {"repeats": 30, "warmup": 2},
    "budget": {"max_accuracy_drop": 5.0},
    # sensitivity-seeded warm starts probe every model first; the tests of warm starts turn
    # them on (tests/search/test_warm_starts.py), the rest keep a tiny study's trials sampled
    "sensitivity": {"enabled": False},
}


def study_dict(*, defaults: bool = True, **sections: Mapping[str, Any] | None) -> dict[str, Any]:
    """The study as a dict: the defaults (unless ``defaults=False``) with ``sections`` merged in."""
    data: dict[str, Any] = copy.deepcopy(DEFAULTS) if defaults else {}
    _merge(data, sections)
    return data


def study_toml(*, defaults: bool = True, **sections: Mapping[str, Any] | None) -> str:
    """The TOML text of :func:`study_dict`."""
    return dumps(study_dict(defaults=defaults, **sections))


def write_study(
    folder: str | Path, *, defaults: bool = True, **sections: Mapping[str, Any] | None
) -> Path:
    """Write the study to ``folder/<study name>.toml`` and return its path."""
    data = study_dict(defaults=defaults, **sections)
    name = data.get("study", {}).get("name", "study")
    path = Path(folder) / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(data))
    return path


def _merge(into: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


# --- a small TOML writer ---------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for ``data`` (str, int, float, bool, lists of those, nested tables)."""
    lines: list[str] = []
    _table(data, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(data: Mapping[str, Any], prefix: tuple[str, ...], lines: list[str]) -> None:
    values = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if prefix and (values or not tables):
        lines.extend(["", "[" + ".".join(_key(p) for p in prefix) + "]"])
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in values.items())
    for key, table in tables.items():
        _table(table, (*prefix, key), lines)


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys must be strings. Got {key!r} ({type(key).__name__}) instead.")
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(
        f"The study-file writer handles str, int, float, bool, lists and tables. "
        f"Got {value!r} ({type(value).__name__}) instead."
    )
