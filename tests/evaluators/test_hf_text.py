"""The Hugging Face text importer: data files, labels, splits, options, and the tasks it builds
from tiny checkpoints made here (``tests/evaluators/hf_text_fixtures.py``)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from evaluators.tasks._loader import _import_task
from evaluators.tasks.hf_text import text_options
from evaluators.tasks.hf_text_data import (
    SPLITS,
    label_ids,
    load_splits,
    split_rows,
)
from spaces.cache import WeightCache
from spaces.heads import head_modules
from spaces.layers import compressible_layers
from spaces.task import Task
from tests.evaluators import hf_text_fixtures as fx

HAS_TRANSFORMERS = all(importlib.util.find_spec(m) for m in ("transformers", "tokenizers"))
# CI installs the huggingface extra: there a missing transformers is an error, not a skip
needs_transformers = pytest.mark.skipif(
    not HAS_TRANSFORMERS and not os.environ.get("CI"),
    reason='transformers is not installed (pip install -e ".[huggingface]")',
)
DEFAULT_LABEL2ID = {"LABEL_0": 0, "LABEL_1": 1}


def numbered_rows(n: int, labels: tuple[Any, ...] = ("a", "b", "c")) -> list[dict[str, Any]]:
    return [{"text": f"sentence number {i}", "label": labels[i % len(labels)]} for i in range(n)]


# --- data files, splits and labels (no transformers needed) ------------------------------------


def test_csv_and_jsonl_give_the_same_disjoint_seeded_splits(tmp_path: Path) -> None:
    rows = numbered_rows(50)
    csv_path = fx.write_csv(tmp_path / "d.csv", rows, ("label", "text"))
    jsonl_path = fx.write_jsonl(tmp_path / "d.jsonl", rows)
    kwargs: dict[str, Any] = {
        "text_column": "text",
        "label_column": "label",
        "validation": 0.2,
        "test": 0.2,
    }
    from_csv = load_splits(str(csv_path), **kwargs)
    from_jsonl = load_splits(str(jsonl_path), **kwargs)
    assert from_csv == from_jsonl
    assert [len(from_csv.texts[s]) for s in SPLITS] == [30, 10, 10]
    seen = [t for s in SPLITS for t in from_csv.texts[s]]
    assert sorted(seen) == sorted(r["text"] for r in rows)  # every row once: no row shared
    assert from_csv.labels is not None
    by_text = {r["text"]: r["label"] for r in rows}
    for s in SPLITS:  # labels travel with their texts
        assert from_csv.labels[s] == [by_text[t] for t in from_csv.texts[s]]
    assert from_csv.texts["train"] != [r["text"] for r in rows[:30]]  # shuffled


def test_split_rows_is_seeded_disjoint_and_sized_by_the_fractions() -> None:
    a = split_rows(101, validation=0.1, test=0.3)
    b = split_rows(101, validation=0.1, test=0.3)
    assert all((a[s] == b[s]).all() for s in SPLITS)
    assert [len(a[s]) for s in SPLITS] == [61, 10, 30]
    together = sorted(int(i) for s in SPLITS for i in a[s])
    assert together == list(range(101))
    other = split_rows(101, validation=0.1, test=0.3, seed=1)
    assert not (other["test"] == a["test"]).all()
    with pytest.raises(ValueError, match=r"^'task.data' has 6 rows: too few"):
        split_rows(6, validation=0.2, test=0.2)


def test_a_table_of_three_files_is_used_as_it_is(tmp_path: Path) -> None:
    files = {}
    for i, s in enumerate(SPLITS):
        files[s] = str(fx.write_jsonl(tmp_path / f"{s}.jsonl", numbered_rows(3 + i)))
    got = load_splits(files, text_column="text", label_column="label", validation=0.2, test=0.2)
    assert [len(got.texts[s]) for s in SPLITS] == [3, 4, 5]
    assert got.texts["test"] == [r["text"] for r in numbered_rows(5)]
    with pytest.raises(ValueError, match=r"^'task.data' lacks \['test'\]"):
        load_splits(
            {"train": files["train"], "validation": files["validation"]},
            text_column="text",
            label_column="label",
            validation=0.2,
            test=0.2,
        )


def test_a_text_file_is_one_sentence_a_line_for_embeddings_only(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("".join(f"line {i}\n\n" for i in range(20)))
    got = load_splits(str(path), text_column="text", label_column=None, validation=0.2, test=0.2)
    assert got.labels is None
    assert sorted(t for s in SPLITS for t in got.texts[s]) == sorted(f"line {i}" for i in range(20))
    with pytest.raises(ValueError, match=r"^'task.data' = .* is a text file without labels"):
        load_splits(str(path), text_column="text", label_column="label", validation=0.2, test=0.2)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize(
    ("text_column", "label_column", "key"),
    [("sentence", "label", "text_column"), ("text", "topic", "label_column")],
)
def test_a_missing_column_is_one_line_naming_the_option(
    tmp_path: Path, suffix: str, text_column: str, label_column: str, key: str
) -> None:
    rows = numbered_rows(20)
    path = (
        fx.write_csv(tmp_path / "d.csv", rows, ("text", "label"))
        if suffix == "csv"
        else fx.write_jsonl(tmp_path / "d.jsonl", rows)
    )
    with pytest.raises(ValueError) as info:
        load_splits(
            str(path),
            text_column=text_column,
            label_column=label_column,
            validation=0.2,
            test=0.2,
        )
    message = str(info.value)
    assert message.startswith(f"'task.options.{key}' = ") and "no such column" in message
    assert "['label', 'text']" in message and "\n" not in message


def test_bad_files_are_one_line_naming_task_data(tmp_path: Path) -> None:
    opts: dict[str, Any] = {"text_column": "text", "label_column": None}
    opts |= {"validation": 0.2, "test": 0.2}
    with pytest.raises(ValueError, match=r"^'task.data' = .* is not a file\.$"):
        load_splits(str(tmp_path / "nothing.csv"), **opts)
    (tmp_path / "d.parquet").write_text("x")
    with pytest.raises(ValueError, match=r"^'task.data' = .* unknown file type '.parquet'"):
        load_splits(str(tmp_path / "d.parquet"), **opts)
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"^'task.data' = .* line 2 is not JSON"):
        load_splits(str(tmp_path / "d.jsonl"), **opts)
    fx.write_jsonl(tmp_path / "n.jsonl", [{"text": i} for i in range(20)])
    with pytest.raises(ValueError, match=r"^'task.options.text_column' = 'text': row 1 "):
        load_splits(str(tmp_path / "n.jsonl"), **opts)


def test_labels_follow_label2id_then_integer_ids_then_sorted_values() -> None:
    named = {"neg": 0, "pos": 1}
    by_name = label_ids(["pos", "neg", "pos"], label2id=named, num_labels=2)
    assert (by_name.rule, by_name.ids) == ("label2id", {"neg": 0, "pos": 1})
    reversed_names = label_ids(["a", "b"], label2id={"b": 0, "a": 1}, num_labels=2)
    assert reversed_names.ids == {"a": 1, "b": 0}  # the checkpoint's order, not sorted order
    ints = label_ids([2, 0, 1, "1"], label2id=DEFAULT_LABEL2ID, num_labels=3)
    assert (ints.rule, ints.ids) == ("integer", {"0": 0, "1": 1, "2": 2})
    only_two = label_ids([2, 0], label2id=DEFAULT_LABEL2ID, num_labels=3)
    assert only_two.ids == {"0": 0, "2": 2}  # ids, not renumbered
    strings = label_ids(["spam", "ham", "eggs", "ham"], label2id=DEFAULT_LABEL2ID, num_labels=3)
    assert (strings.rule, strings.ids) == ("sorted", {"eggs": 0, "ham": 1, "spam": 2})


@pytest.mark.parametrize(
    ("labels", "label2id", "num_labels", "message"),
    [
        ([0, 3], DEFAULT_LABEL2ID, 3, r"integer labels are class ids 0\.\.2 .* \['3'\]"),
        (["pos", "meh"], {"neg": 0, "pos": 1}, 2, r"labels \['meh'\] are not in the checkpoint"),
        (
            ["a", "b", "c"],
            DEFAULT_LABEL2ID,
            2,
            r"the data has 3 distinct labels but .* has 2 outputs",
        ),
        ([True, False], DEFAULT_LABEL2ID, 2, r"label True is bool"),
        ([0.5, 1.5], DEFAULT_LABEL2ID, 2, r"label 0.5 is float"),
    ],
)
def test_labels_that_fit_no_rule_are_one_line_naming_the_label_column(
    labels: list[Any], label2id: dict[str, int], num_labels: int, message: str
) -> None:
    with pytest.raises(ValueError, match=r"^'task.options.label_column': " + message):
        label_ids(labels, label2id=label2id, num_labels=num_labels)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("embedding", {"label_column": "y"}, r"Unknown key 'task.options.label_column'"),
        ("embedding", {"maxlen": 8}, r"Unknown key 'task.options.maxlen'"),
        ("embedding", {"max_length": "8"}, r"'task.options.max_length' must be an int"),
        ("embedding", {"max_length": 1}, r"'task.options.max_length' must be an int"),
        ("embedding", {"batch_size": True}, r"'task.options.batch_size' must be an int"),
        ("embedding", {"test_fraction": 0.5}, r"'task.options.test_fraction' must be a float"),
        ("embedding", {"depths": [0]}, r"'task.options.depths' must be a list"),
        ("sequence-classification", {"text_column": ""}, r"'task.options.text_column' must"),
        (
            "sequence-classification",
            {"validation_fraction": 0.45, "test_fraction": 0.45},
            r"must stay below 0.8",
        ),
    ],
)
def test_bad_options_are_one_line_naming_the_key(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        text_options(kind, options)
    assert "\n" not in str(info.value)


def test_good_options_are_read() -> None:
    opts = text_options(
        "sequence-classification",
        {"text_column": "t", "label_column": "y", "max_length": 16, "test_fraction": 0.25},
    )
    assert (opts.text_column, opts.label_column, opts.max_length) == ("t", "y", 16)
    assert opts.test_fraction == 0.25 and opts.validation_fraction == 0.2
    assert text_options("embedding", {"depths": [1, 2]}).depths == (1, 2)
    with pytest.raises(ValueError, match="validation_fraction"):
        text_options("embedding", {"validation_fraction": 0})


# --- tasks from tiny checkpoints -------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A classifier and an encoder checkpoint (two blocks), and labelled sentences."""
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers is not installed")
    root = tmp_path_factory.mktemp("hf")
    tok = fx.tokenizer()
    rows = fx.labelled_rows(20)
    return {
        "root": root,
        "classifier": fx.save_classifier(root / "classifier", tok),
        "encoder": fx.save_encoder(root / "encoder", tok),
        "csv": fx.write_csv(root / "topics.csv", rows, ("text", "label")),
        "jsonl": fx.write_jsonl(root / "topics.jsonl", rows),
    }


def build(
    made: dict[str, Path],
    model: str,
    kind: str,
    data: str | dict[str, str],
    tmp_path: Path,
    **options: Any,
) -> Task:
    source = {"huggingface": str(made[model]), "data": data, "kind": kind}
    options.setdefault("max_length", 16)
    return _import_task(source, options, cache=WeightCache(tmp_path / "cache"), seed=0, device=None)


@needs_transformers
def test_a_classifier_checkpoint_becomes_a_classification_task(
    made: dict[str, Path], tmp_path: Path
) -> None:
    task = build(made, "classifier", "sequence-classification", str(made["csv"]), tmp_path)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert task.kind == "classification" and task.metric.name == "accuracy"
    assert [len(task.train), len(task.val), len(task.test)] == [36, 12, 12]
    ids, mask = task.val.inputs
    assert ids.shape == mask.shape == (12, 16) and ids.dtype == torch.long
    assert [t.shape for t in task.example_input] == [(1, 16), (1, 16)]
    # the topic names are the checkpoint's label2id: targets are those ids, row for row
    text = load_splits(
        str(made["csv"]), text_column="text", label_column="label", validation=0.2, test=0.2
    )
    assert text.labels is not None
    assert task.val.targets.tolist() == [fx.TOPICS.index(x) for x in text.labels["validation"]]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(made["classifier"]), local_files_only=True)
    want = tok(text.texts["validation"], padding="max_length", truncation=True, max_length=16)
    assert ids.tolist() == want["input_ids"] and mask.tolist() == want["attention_mask"]
    logits = task.model(*task.val.inputs)
    assert logits.shape == (12, len(fx.TOPICS))
    layers = compressible_layers(task.model)
    assert "model.classifier" in layers and "model.bert.encoder.layer.1.output.dense" in layers
    assert head_modules(task.model) == [f"model.bert.encoder.layer.{i}.attention" for i in (0, 1)]
    assert sorted(task.students) == ["L1"]  # one block of two: spread and first are the same
    student = task.students["L1"]()
    assert set(compressible_layers(student)) < set(layers)
    assert "model.bert.encoder.layer.1.output.dense" not in compressible_layers(student)
    assert student.model.config.num_hidden_layers == 1  # type: ignore[union-attr]
    assert student(*task.val.inputs).shape == logits.shape


@needs_transformers
def test_the_task_name_follows_the_checkpoint_and_the_data(
    made: dict[str, Path], tmp_path: Path
) -> None:
    kind = "sequence-classification"
    first = build(made, "classifier", kind, str(made["csv"]), tmp_path)
    again = build(made, "classifier", kind, str(made["csv"]), tmp_path)
    assert first.name == again.name and first.name.startswith("hf-seqcls-")
    other_data = fx.write_csv(made["root"] / "fewer.csv", fx.labelled_rows(19), ("text", "label"))
    assert build(made, "classifier", kind, str(other_data), tmp_path).name != first.name
    assert build(made, "classifier", kind, str(made["csv"]), tmp_path, max_length=12).name != (
        first.name
    )
    tok = fx.tokenizer()
    retrained = fx.save_classifier(made["root"] / "classifier-seed1", tok, seed=1)
    made_other = {**made, "classifier": retrained}
    assert build(made_other, "classifier", kind, str(made["csv"]), tmp_path).name != first.name


@needs_transformers
def test_an_encoder_checkpoint_becomes_an_embedding_task_scored_by_fidelity(
    made: dict[str, Path], tmp_path: Path
) -> None:
    task = build(made, "encoder", "embedding", str(made["jsonl"]), tmp_path, depths=[1])
    assert task.kind == "embedding" and task.metric.name == "cosine_fidelity"
    with torch.no_grad():
        out = task.model(*task.test.inputs)
    assert out.shape == (12, 32)
    assert torch.allclose(out.norm(dim=-1), torch.ones(12), atol=1e-5)
    assert torch.allclose(out, task.test.targets, atol=1e-6)  # targets: the model's own
    assert task.metric(out, task.test.targets) == pytest.approx(1.0, abs=1e-6)
    assert task.extra_metrics["nn_agreement"](out, task.test.targets) == 1.0
    layers = compressible_layers(task.model)
    assert not any("pooler" in name for name in layers)  # mean pooling never reads it
    assert "model.encoder.layer.0.attention.self.query" in layers
    # a second build reads the cached reference embeddings
    cached = build(made, "encoder", "embedding", str(made["jsonl"]), tmp_path, depths=[1])
    assert torch.equal(cached.test.targets, task.test.targets)


@needs_transformers
def test_checkpoint_problems_are_one_line_naming_the_key(
    made: dict[str, Path], tmp_path: Path
) -> None:
    csv = str(made["csv"])
    kind = "sequence-classification"
    with pytest.raises(ValueError, match=r"^'task.huggingface' = .* is not a folder"):
        build({**made, "classifier": made["csv"]}, "classifier", kind, csv, tmp_path)
    # an encoder without a classification head: the head would be random
    with pytest.raises(ValueError, match=r"^'task.huggingface' = .* lacks 2 weight\(s\)") as info:
        build(made, "encoder", kind, csv, tmp_path)
    assert "classifier.weight" in str(info.value) and "task.kind" in str(info.value)
    bare = made["root"] / "no-tokenizer"
    bare.mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((made["classifier"] / name).read_bytes())
    with pytest.raises(ValueError, match=r"^'task.huggingface' = .* no tokenizer"):
        build({**made, "bare": bare}, "bare", kind, csv, tmp_path)
    with pytest.raises(ValueError, match=r"^'task.options.max_length' = 65: .* at most 64"):
        build(made, "classifier", kind, csv, tmp_path, max_length=65)
    with pytest.raises(ValueError, match=r"^'task.options.depths' = \[2\]: .* 2 transformer"):
        build(made, "classifier", kind, csv, tmp_path, depths=[2])
