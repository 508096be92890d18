"""Text data for a Hugging Face checkpoint: CSV / JSONL / text files, labels and splits.

- **Files.** ``.csv`` (a header row, UTF-8), ``.jsonl`` / ``.ndjson`` (one JSON object a line)
  or ``.txt`` (one text a line, blank lines skipped; no labels, so for ``kind = "embedding"``
  only). Columns are named by ``task.options.text_column`` (default ``text``) and
  ``task.options.label_column`` (default ``label``).
- **Labels** (:func:`label_ids`): the checkpoint's ``label2id`` when it names its labels and
  every label in the data is one of those names; else integer labels are the class ids
  themselves (``0 .. num_labels - 1``); else string labels are numbered in sorted order of
  their distinct values (over all the data files together).
- **Splits** (:func:`split_rows`): one file is shuffled with a fixed seed
  (:data:`evaluators.tasks._common.DATA_SEED`, the same for every study seed) and cut by row
  into train / validation / test (60 / 20 / 20 by default); a table of three files is used as
  it is.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluators.tasks._common import DATA_SEED

SPLITS = ("train", "validation", "test")
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
_INT = re.compile(r"[+-]?\d+")
#: Names Transformers gives labels nobody named (``LABEL_0``, ``LABEL_1``, ...).
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")

Row = dict[Any, Any]  # a .txt line is {None: text}


@dataclass(frozen=True)
class TextSplits:
    """Texts (and raw labels, ``None`` without a label column) of the three splits."""

    texts: dict[str, list[str]]
    labels: dict[str, list[Any]] | None


def read_rows(path: Path, *, key: str = "task.data") -> list[Row]:
    """The rows of one data file, as dicts (a ``.txt`` file's lines as ``{None: line}``).

    Raises:
        ValueError: a missing file, an unknown suffix or a malformed line, naming ``key``.
    """
    if not path.is_file():
        raise ValueError(f"'{key}' = {str(path)!r} is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    if suffix in (".jsonl", ".ndjson"):
        rows: list[Row] = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"'{key}' = {str(path)!r}: line {number} is not JSON ({exc.msg})."
                    ) from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f"'{key}' = {str(path)!r}: line {number} is not a JSON object."
                    )
                rows.append(row)
        return rows
    if suffix in TEXT_SUFFIXES:
        with open(path, encoding="utf-8") as fh:
            return [{None: line.strip()} for line in fh if line.strip()]
    raise ValueError(
        f"'{key}' = {str(path)!r}: unknown file type {suffix or '(none)'!r}; use one of "
        f"{[*TABLE_SUFFIXES, *TEXT_SUFFIXES]}."
    )


def column(rows: Sequence[Row], name: str | None, *, option: str, path: Path) -> list[Any]:
    """The values of column ``name`` (``None``: a ``.txt`` file's lines).

    Raises:
        ValueError: a row lacks the column or has no value there, naming
            ``task.options.<option>``.
    """
    values = []
    for number, row in enumerate(rows, start=1):
        if name not in row:
            if None in row:  # a text file: there are no columns
                raise ValueError(
                    f"'task.options.{option}': {str(path)!r} is a text file without columns; "
                    "use a CSV or JSONL file with that column."
                )
            columns = sorted(str(c) for c in row)
            raise ValueError(
                f"'task.options.{option}' = {name!r}: no such column in {str(path)!r} (row "
                f"{number} has {columns}); set it to one of them."
            )
        value = row[name]
        if value is None or (isinstance(value, str) and option == "label_column" and not value):
            raise ValueError(
                f"'task.options.{option}' = {name!r}: row {number} of {str(path)!r} has no value."
            )
        values.append(value)
    return values


def texts_of(values: Sequence[Any], *, option: str, name: str | None, path: Path) -> list[str]:
    """Text values, checked to be strings."""
    for number, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise ValueError(
                f"'task.options.{option}' = {name!r}: row {number} of {str(path)!r} holds "
                f"{type(value).__name__} {value!r}, not text."
            )
    return list(values)


def split_rows(
    n: int, *, validation: float, test: float, seed: int = DATA_SEED
) -> dict[str, np.ndarray]:
    """Row indices of the train / validation / test splits of ``n`` rows: a seeded shuffle
    cut at ``1 - validation - test`` and ``1 - test``; disjoint, together every row.

    Raises:
        ValueError: a split would hold fewer than two rows (naming ``task.data``).
    """
    n_val, n_test = round(validation * n), round(test * n)
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) < 2:
        raise ValueError(
            f"'task.data' has {n} rows: too few to split {1 - validation - test:.2f} / "
            f"{validation:.2f} / {test:.2f} with two rows or more in each split; add rows "
            "or give a table of three files."
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def load_splits(
    data: str | Mapping[str, str],
    *,
    text_column: str,
    label_column: str | None,
    validation: float,
    test: float,
) -> TextSplits:
    """The three splits' texts and labels from one file or a table of three files.

    ``label_column`` ``None``: no labels (embeddings). A ``.txt`` file is one text a line.

    Raises:
        ValueError: missing files or columns, too few rows, naming the key.
    """
    if isinstance(data, Mapping):
        missing = [s for s in SPLITS if s not in data]
        if missing:
            raise ValueError(
                f"'task.data' lacks {missing}; a table of data files needs 'train', "
                "'validation' and 'test'."
            )
        paths = {s: Path(data[s]) for s in SPLITS}
        parts = {s: _read(paths[s], f"task.data.{s}", text_column, label_column) for s in SPLITS}
        for s, (rows_of_split, _) in parts.items():
            if len(rows_of_split) < 2:
                raise ValueError(
                    f"'task.data.{s}' = {str(paths[s])!r} has {len(rows_of_split)} row(s); a "
                    "split needs two or more."
                )
        labels = None if label_column is None else {s: parts[s][1] for s in SPLITS}
        return TextSplits({s: parts[s][0] for s in SPLITS}, labels)
    all_texts, all_labels = _read(Path(data), "task.data", text_column, label_column)
    rows = split_rows(len(all_texts), validation=validation, test=test)
    texts = {s: [all_texts[i] for i in rows[s]] for s in SPLITS}
    if label_column is None:
        return TextSplits(texts, None)
    return TextSplits(texts, {s: [all_labels[i] for i in rows[s]] for s in SPLITS})


def _read(
    path: Path, key: str, text_column: str, label_column: str | None
) -> tuple[list[str], list[Any]]:
    rows = read_rows(path, key=key)
    is_text = path.suffix.lower() in TEXT_SUFFIXES
    if is_text and label_column is not None:
        raise ValueError(
            f"'{key}' = {str(path)!r} is a text file without labels; sequence classification "
            "needs a CSV or JSONL file with a text and a label column."
        )
    name = None if is_text else text_column
    texts = texts_of(
        column(rows, name, option="text_column", path=path),
        option="text_column",
        name=name,
        path=path,
    )
    if label_column is None:
        return texts, []
    return texts, column(rows, label_column, option="label_column", path=path)


@dataclass(frozen=True)
class LabelMap:
    """How labels in the data became class ids: ``rule`` says which rule applied."""

    ids: dict[Any, int]
    rule: str


def label_ids(labels: Sequence[Any], *, label2id: Mapping[str, int], num_labels: int) -> LabelMap:
    """Class ids for the data's labels (every split's labels together), by the first rule
    that fits:

    1. ``"label2id"``: the checkpoint names its labels (not Transformers' default
       ``LABEL_<i>``) and every label is one of those names;
    2. ``"integer"``: every label is an integer (a JSON number or a CSV field of digits),
       taken as the class id, ``0 .. num_labels - 1``;
    3. ``"sorted"``: labels numbered ``0, 1, ...`` in sorted order of their distinct values,
       at most ``num_labels`` of them.

    Raises:
        ValueError: labels that fit no rule (naming ``task.options.label_column``).
    """
    for value in labels:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(
                f"'task.options.label_column': label {value!r} is {type(value).__name__}; "
                "labels must be strings or integers."
            )
    distinct = sorted({str(v) for v in labels}, key=_label_order)
    named = bool(label2id) and not all(_DEFAULT_LABEL.fullmatch(k) for k in label2id)
    if named and all(v in label2id for v in distinct):
        return LabelMap({v: int(label2id[v]) for v in distinct}, "label2id")
    if all(_INT.fullmatch(v) for v in distinct):
        wrong = [v for v in distinct if not 0 <= int(v) < num_labels]
        if wrong:
            raise ValueError(
                f"'task.options.label_column': integer labels are class ids 0..{num_labels - 1} "
                f"(the checkpoint has {num_labels} labels); the data has {wrong[:5]}."
            )
        return LabelMap({v: int(v) for v in distinct}, "integer")
    if named:
        unknown = [v for v in distinct if v not in label2id]
        raise ValueError(
            f"'task.options.label_column': labels {unknown[:5]} are not in the checkpoint's "
            f"label2id {sorted(label2id)}; use its label names or class ids."
        )
    if len(distinct) > num_labels:
        raise ValueError(
            f"'task.options.label_column': the data has {len(distinct)} distinct labels but "
            f"the checkpoint's classifier has {num_labels} outputs."
        )
    return LabelMap({v: i for i, v in enumerate(distinct)}, "sorted")


def _label_order(value: str) -> tuple[int, int, str]:
    """Integers in numeric order (before other strings), other strings alphabetically."""
    return (0, int(value), "") if _INT.fullmatch(value) else (1, 0, value)


def encode_labels(labels: Sequence[Any], mapping: LabelMap) -> list[int]:
    """The class id of each label."""
    return [mapping.ids[str(v)] for v in labels]
