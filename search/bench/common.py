"""What every benchmark shares: the machine's description, its section of BENCHMARKS.md, the
registry entry a benchmark provides, and the tiny study files of smoke tests."""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
# the smallest built-in task: its teacher trains in about a second on an idle core
SMOKE_STUDY = Path("studies/breast_cancer_mlp.toml")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of ``python -m search.bench``.

    Attributes:
        name: The sub-command, and the name of its section of BENCHMARKS.md.
        help: One line for ``--help``.
        add_arguments: Adds the sub-command's own arguments to its parser.
        run: Runs the benchmark as ``args`` say; returns the Markdown section.
        smoke: Turns the parsed arguments into those of a smoke test (a tiny budget, study
            files written under the given folder); ``None`` when the benchmark has none.
        rows: The labels of the table rows the section must hold for ``args`` (the first
            cell of each row); a smoke test checks them.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str]
    smoke: Callable[[argparse.Namespace, Path], argparse.Namespace] | None
    rows: Callable[[argparse.Namespace], Sequence[str]]


def machine() -> str:
    """CPU model, CPU count, Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, ``"unknown"`` where the system has none."""
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def today() -> str:
    return _dt.date.today().isoformat()


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``name`` section of ``path`` (appending it when absent)."""
    start, end = _markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def read_section(name: str, path: Path) -> str | None:
    """The body of the ``name`` section of ``path``; ``None`` when the file or section is absent."""
    start, end = _markers(name)
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def missing_rows(section: str, labels: Sequence[str]) -> list[str]:
    """What ``section`` lacks of a benchmark's table: each label names a table row (its first
    cell starts with the label) whose other cells hold a number; with no labels, any table row
    with a number will do (the header and separator rows do not count)."""
    lines = [line.split("|")[1:-1] for line in [*section.splitlines(), ""]]

    def separator(cells: list[str]) -> bool:
        return bool(cells) and all(set(c.strip()) <= set("-: ") for c in cells)

    data = [
        cells
        for cells, after in itertools.pairwise(lines)
        if cells
        and not separator(cells)
        and not separator(after)
        and any(re.search(r"\d", c) for c in cells[1:])
    ]
    if not labels:
        return [] if data else ["(a table row with a number)"]
    return [label for label in labels if not any(r[0].strip().startswith(label) for r in data)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain text of study files
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"Cannot write {type(value).__name__} values to a study file: {value!r}.")


def _toml_key(key: str) -> str:
    """A bare TOML key, or a quoted one (a layer name such as ``_blocks.0._expand_conv``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_tables(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    scalars = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)
    ]
    lines = ([f"[{prefix}]"] if prefix else []) + scalars + [""]
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += _toml_tables(value, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key))
    return lines


def smoke_source(study_file: Path, default: Path) -> Path:
    """The study a smoke test shrinks: the smallest built-in task in place of a benchmark's
    default study, a study file the user named as it is."""
    return SMOKE_STUDY if study_file == default else study_file


def tiny_study(
    study_file: Path,
    folder: Path,
    *,
    n_trials: int = 4,
    students: int = 2,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A copy of ``study_file`` in ``folder`` on a smoke test's budget.

    ``n_trials`` trials, the first ``students`` entries of its students, one epoch of
    distillation and of fine-tuning, the fewest timed passes the latency settings allow;
    ``tables`` overrides further keys, table by table (``{"study": {"sampler": "random"}}``).
    """
    data = tomllib.loads(study_file.read_text(encoding="utf-8"))
    shrink: dict[str, dict[str, Any]] = {
        "study": {"n_trials": n_trials},
        "distillation": {"epochs": 1},
        "finetune": {"epochs": min(1, data.get("finetune", {}).get("epochs", 1))},
        "latency": {"warmup": 1, "repeats": 30, "builds": 1},
    }
    if "students" in data.get("space", {}):
        shrink["space"] = {"students": data["space"]["students"][:students]}
    for table, values in [*shrink.items(), *(tables or {}).items()]:
        data.setdefault(table, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / study_file.name
    path.write_text("\n".join(_toml_tables(data)), encoding="utf-8")
    return path
