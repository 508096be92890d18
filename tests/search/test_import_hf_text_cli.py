"""``[task] huggingface`` with ``kind = "sequence-classification"`` and ``"embedding"`` through
the real command line: ``frontier run`` searches a tiny checkpoint built here, ``frontier
export`` writes an ONNX file that onnxruntime runs on ``input_ids`` and ``attention_mask`` to
the outputs of the candidate rebuilt from the study; the README's worked example runs as
written."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from evaluators import predict
from search.export import FILES, onnx_outputs
from search.rebuild import rebuild
from search.stored import open_stored
from tests.conftest import REPO, cli_in_process, run_cli
from tests.evaluators import hf_text_fixtures as fx
from tests.search._readme_examples import run_card_snippet
from tests.studyfile import write_study

HAS_TRANSFORMERS = all(importlib.util.find_spec(m) for m in ("transformers", "tokenizers"))
# CI installs the huggingface extra: there a missing transformers is an error, not a skip
pytestmark = pytest.mark.skipif(
    not HAS_TRANSFORMERS and not os.environ.get("CI"),
    reason='transformers is not installed (pip install -e ".[huggingface]")',
)
MAX_LENGTH = 16


def hf_study(folder: Path, task: dict[str, Any], **sections: Any) -> Path:
    """A tiny study of a Hugging Face checkpoint: teacher and the one-block student, head
    pruning on, few trials."""
    return write_study(
        folder,
        study={"name": "hf", "n_trials": 6},
        task={"name": None, **task, "options": {"max_length": MAX_LENGTH}},
        space={"students": ["teacher", "L1"], "heads_max": 0.5},
        distillation={"epochs": 2},
        finetune={"epochs": 1},
        budget={"max_accuracy_drop": 100.0},
        **sections,
    )


def run_and_export(study: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, int, Path]:
    """``frontier run``, then ``frontier export`` of a compressed front point."""
    res = run_cli("run", str(study), "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    trials, front = pd.read_csv(out / "trials.csv"), pd.read_csv(out / "front.csv")
    compressed = front[front["baseline"].fillna("") != "teacher"]
    assert len(compressed) >= 1, front[["trial", "accuracy", "size_bytes", "baseline"]]
    trial = int(compressed.iloc[0]["trial"])
    dest = out / "exported"
    res = run_cli(
        "export", str(study), "--out", str(out), "--trial", str(trial), "--dest", str(dest)
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return trials, front, trial, dest


def check_onnx_reproduces_the_candidate(
    study: Path, out: Path, trial: int, dest: Path, front: pd.DataFrame
) -> dict[str, Any]:
    """onnxruntime on ``model.onnx`` (two int64 inputs) gives the rebuilt candidate's outputs
    and the study's validation figure."""
    import onnx

    graph = onnx.load(str(dest / FILES["onnx"])).graph
    assert [i.type.tensor_type.elem_type for i in graph.input] == [onnx.TensorProto.INT64] * 2
    stored = open_stored(str(study), out=out)
    ctx = stored.context()
    task = ctx.task
    frozen = {t.number: t for t in stored.study.get_trials(deepcopy=False)}[trial]
    candidate = rebuild(ctx, frozen)
    assert len(candidate.artifact) == (dest / FILES["artifact"]).stat().st_size
    for split in (task.val, task.test):
        ours = predict(candidate.model, split)
        theirs = onnx_outputs(dest / FILES["onnx"], split)
        assert theirs.shape == ours.shape
        assert torch.allclose(theirs, ours, atol=1e-4), (theirs - ours).abs().max()
    row = front[front["trial"] == trial].iloc[0]
    onnx_val = task.metric(onnx_outputs(dest / FILES["onnx"], task.val), task.val.targets)
    assert onnx_val == pytest.approx(float(row["accuracy"]), abs=1e-5)
    meta: dict[str, Any] = json.loads((dest / FILES["meta"]).read_text())
    figures = meta["figures"]
    assert figures["test_accuracy_onnxruntime"] == pytest.approx(
        figures["test_accuracy_torch_rebuilt"], abs=1e-5
    )
    assert meta["input_shape"] == [[1, MAX_LENGTH], [1, MAX_LENGTH]]
    # the model card's ONNX Runtime snippet runs as written (two int64 inputs)
    assert run_card_snippet(dest)["outputs"].shape[0] == 1
    return meta


@pytest.fixture(scope="module")
def tok() -> Any:
    return fx.tokenizer()


@pytest.mark.slow
def test_a_sequence_classifier_is_searched_and_exported(tmp_path: Path, tok: Any) -> None:
    fx.save_classifier(tmp_path / "classifier", tok)
    fx.write_csv(tmp_path / "topics.csv", fx.labelled_rows(40), ("text", "label"))
    study = hf_study(
        tmp_path,
        {"huggingface": "classifier", "kind": "sequence-classification", "data": "topics.csv"},
    )
    out = tmp_path / "out"
    trials, front, trial, dest = run_and_export(study, out)
    assert set(trials["student"]) == {"teacher", "L1"}
    # every encoder Linear and the classifier are searched, and the attention heads
    assert "bits.model.bert.encoder.layer.1.attention.self.query" in trials
    assert "bits.model.classifier" in trials
    assert "heads.model.bert.encoder.layer.0.attention" in trials
    assert front["test_accuracy"].notna().all()
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    int8 = trials[trials["baseline"] == "uniform-int8"].iloc[0]
    assert int8["size_bytes"] < 0.4 * teacher["size_bytes"]
    meta = check_onnx_reproduces_the_candidate(study, out, trial, dest, front)
    assert meta["task"].startswith("huggingface:")


@pytest.mark.slow
def test_an_encoder_is_searched_for_embeddings_and_exported(tmp_path: Path, tok: Any) -> None:
    fx.save_encoder(tmp_path / "encoder", tok)
    rows = fx.labelled_rows(25)  # 75 sentences: a text file, a JSONL and a CSV file
    (tmp_path / "train.txt").write_text("".join(r["text"] + "\n" for r in rows[:45]))
    fx.write_jsonl(tmp_path / "validation.jsonl", rows[45:60])
    fx.write_csv(tmp_path / "test.csv", rows[60:], ("text",))
    data = {"train": "train.txt", "validation": "validation.jsonl", "test": "test.csv"}
    study = hf_study(tmp_path, {"huggingface": "encoder", "kind": "embedding", "data": data})
    out = tmp_path / "out"
    trials, front, trial, dest = run_and_export(study, out)
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    assert teacher["accuracy"] == pytest.approx(1.0, abs=1e-5)  # fidelity to itself
    assert teacher["nn_agreement"] == pytest.approx(1.0)
    assert "bits.model.encoder.layer.0.intermediate.dense" in trials
    assert not any("pooler" in c for c in trials.columns)
    assert front["test_nn_agreement"].notna().all()
    assert (trials["accuracy"] <= 1.0 + 1e-5).all()
    check_onnx_reproduces_the_candidate(study, out, trial, dest, front)


def test_a_bad_text_column_ends_the_run_with_one_line(
    tmp_path: Path, tok: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fx.save_classifier(tmp_path / "classifier", tok)
    fx.write_jsonl(tmp_path / "topics.jsonl", fx.labelled_rows(10))
    study = hf_study(
        tmp_path,
        {"huggingface": "classifier", "kind": "sequence-classification", "data": "topics.jsonl"},
    )
    study.write_text(study.read_text().replace("max_length = 16", 'text_column = "sentence"'))
    res = cli_in_process(capsys, "run", str(study), "--no-progress", "--out", str(tmp_path / "o"))
    assert res.returncode == 2, res.stderr
    error = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(error) == 1, res.stderr
    assert "'task.options.text_column' = 'sentence': no such column" in error[0]


# --- the README's worked example, run as written ---------------------------------------------


def readme_section_blocks() -> list[tuple[str, str]]:
    """``(name, code)`` of the ``<!-- example: NAME -->`` blocks of the README's Hugging Face
    text subsection, in order."""
    text = (REPO / "README.md").read_text()
    start = text.index("### Hugging Face: text classification and sentence embeddings")
    end = text.find("\n## ", start)
    section = text[start : end if end != -1 else len(text)]
    following = section.find("\n### ", 10)
    section = section if following == -1 else section[:following]
    return re.findall(r"<!-- example: (\S+) -->\s*```\w*\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_the_readme_worked_example_runs_as_written(tmp_path: Path) -> None:
    blocks = readme_section_blocks()
    names = [name for name, _ in blocks]
    assert names[-1].endswith(".sh") and any(n.endswith(".toml") for n in names), names
    for name, code in blocks[:-1]:
        (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for line in blocks[-1][1].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line)
        # the README's `python` and `frontier`: this interpreter and its installed CLI
        program = {"python": [sys.executable], "frontier": [sys.executable, "-m", "search.cli"]}
        argv = program[argv[0]] + argv[1:]
        res = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    results = next(tmp_path.glob("results/*/front.csv")).parent
    trials = pd.read_csv(results / "trials.csv")
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    # three topics: chance is a third. The WordPiece trainer is not seeded (its Rust hash maps
    # break ties differently in each process), so the vocabulary and the teacher vary between
    # runs: 0.50 to 0.68 on validation in five runs of the example
    assert teacher["accuracy"] > 0.4
    exported = [p for p in tmp_path.rglob(FILES["onnx"]) if "results" not in p.parts]
    assert len(exported) == 1
    meta = json.loads((exported[0].parent / FILES["meta"]).read_text())
    assert np.isfinite(meta["figures"]["test_accuracy_onnxruntime"])
