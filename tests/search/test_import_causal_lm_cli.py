"""A causal language model through the real CLI: the README's worked example, as written.

The README's "Hugging Face: causal language models" example builds a tokenizer and a tiny
GPT-2 trained on Python's bundled documentation, runs the study and exports the selected
candidate; this test runs its three code blocks and checks what they promise.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


def _example(name: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README has no example block {name!r}"
    return m.group(1)


def _unigram_perplexity(folder: Path) -> tuple[float, int]:
    """Perplexity of the text's own token frequencies on the text (fitted on what it scores,
    so an optimistic unigram baseline), and the vocabulary size."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tiny-gpt2"), local_files_only=True)
    ids = tokenizer((folder / "corpus.txt").read_text(encoding="utf-8"))["input_ids"]
    counts = Counter(ids)
    n = len(ids)
    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
    return math.exp(entropy), len(tokenizer)


@pytest.mark.slow
def test_the_readme_causal_lm_example_runs_and_exports_a_faithful_onnx(tmp_path: Path) -> None:
    (tmp_path / "make_tiny_gpt2.py").write_text(_example("make_tiny_gpt2.py"))
    (tmp_path / "tiny_gpt2.toml").write_text(_example("tiny_gpt2.toml"))
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    script = _example("tiny_gpt2.sh").replace("python ", f"{sys.executable} ", 1)
    res = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    results = tmp_path / "results" / "tiny_gpt2"
    trials = pd.read_csv(results / "trials.csv")
    front = pd.read_csv(results / "front.csv")
    teacher = trials[trials["baseline"] == "teacher"].iloc[0]
    unigram, vocab = _unigram_perplexity(tmp_path)
    # the teacher learned the text: far better than the text's own unigram frequencies
    assert teacher["perplexity"] < 0.6 * unigram and teacher["perplexity"] < vocab / 3
    assert teacher["accuracy"] == pytest.approx(1.0, abs=1e-9)
    assert {"perplexity", "test_perplexity"} <= set(front.columns)
    done = trials[trials["state"] == "COMPLETE"]
    # the metric is the teacher's perplexity over the candidate's, on the same blocks
    ratio = teacher["perplexity"] / done["perplexity"]
    assert done["accuracy"].to_numpy() == pytest.approx(ratio.to_numpy(), rel=1e-6)
    assert (front["test_perplexity"] > 1).all()

    (exported,) = sorted((results / "export").glob("trial-*"))
    trial_number = int(exported.name.split("-")[1])
    from search.export import onnx_outputs
    from search.rebuild import rebuild
    from search.stored import open_stored
    from spaces.training import predict

    stored = open_stored(str(tmp_path / "tiny_gpt2.toml"))
    ctx = stored.context()
    trial = stored.study.trials[trial_number]
    candidate = rebuild(ctx, trial)
    # the README's size budget selects a compressed candidate (in this run a quantized one)
    assert len(candidate.artifact) <= 300_000 < teacher["size_bytes"]
    test = ctx.task.test
    expected = predict(candidate.model, test)
    got = onnx_outputs(exported / "model.onnx", test)
    assert got.shape == expected.shape == (len(test), 64, vocab)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)
    assert ctx.task.metric(got, test.targets) == pytest.approx(
        ctx.task.metric(expected, test.targets), abs=1e-4
    )
