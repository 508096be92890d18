"""Run a README worked example as written: its files, then its commands, in a folder."""

from __future__ import annotations

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
import torch

from tests.conftest import REPO


def readme_blocks(prefix: str) -> dict[str, str]:
    """The README code blocks marked ``<!-- example: PREFIX/NAME -->``, by NAME."""
    text = (REPO / "README.md").read_text()
    pattern = rf"<!-- example: {re.escape(prefix)}/([\w.]+) -->\s*```\w*\n(.*?)```"
    return dict(re.findall(pattern, text, re.S))


def run_example(prefix: str, folder: Path, *, n_trials: int) -> list[list[str]]:
    """Write the example's files into ``folder`` and run its ``commands`` block there
    (``frontier run`` with ``--n-trials``); returns the commands run."""
    blocks = readme_blocks(prefix)
    assert "commands" in blocks, f"README has no {prefix}/commands block"
    for name, text in blocks.items():
        if name != "commands":
            (folder / name).write_text(text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    ran = []
    for line in blocks["commands"].splitlines():
        argv = shlex.split(line)
        if not argv:
            continue
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        elif argv[0] == "frontier":
            argv = [sys.executable, "-m", "search.cli", *argv[1:]]
            if argv[3] == "run":
                argv += ["--n-trials", str(n_trials), "--no-progress"]
        done = subprocess.run(
            argv,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"{line}: {done.stderr[-3000:]}"
        ran.append(argv)
    return ran


def check_export_reproduces_the_candidate(study_file: Path) -> tuple[int, float]:
    """The exported model.onnx computes, in ONNX Runtime, what the evaluated candidate (rebuilt
    by the search) computes on the validation inputs; returns the trial and the largest
    difference."""
    from evaluators import predict
    from search.export import FILES, exportable_trial, onnx_outputs
    from search.rebuild import rebuild
    from search.stored import open_stored

    (folder,) = (study_file.parent / "results").glob("*/export/trial-*")
    meta = json.loads((folder / FILES["meta"]).read_text())
    stored = open_stored(str(study_file))
    trial = exportable_trial(stored, meta["trial"])
    ctx = stored.context()
    candidate = rebuild(ctx, trial)
    val = ctx.task.val
    rebuilt = predict(candidate.model, val)
    # the rebuilt candidate is the evaluated one: its validation accuracy is the trial's
    assert ctx.task.metric(rebuilt, val.targets) == trial.user_attrs["accuracy"]
    exported = onnx_outputs(folder / FILES["onnx"], val)
    diff = float((exported - rebuilt).abs().max())
    assert diff <= 1e-4 * (1.0 + float(rebuilt.abs().max())), diff
    assert torch.equal(exported.argmax(1), rebuilt.argmax(1))
    return meta["trial"], diff


def layer_columns(study_file: Path) -> list[str]:
    """The ``bits.<layer>`` columns of the study's trial table."""
    (table,) = (study_file.parent / "results").glob("*/trials.csv")
    return [c for c in pd.read_csv(table).columns if c.startswith("bits.")]


def write_npz(path: Path, n: int, features: int) -> None:
    """A one-file data set of ``n`` rows per split with integer classes 0..2."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "validation", "test"):
        arrays[f"x_{split}"] = rng.normal(size=(n, features)).astype(np.float32)
        arrays[f"y_{split}"] = rng.integers(0, 3, size=n)
    np.savez(path, **arrays)


def run_card_snippet(dest: Path) -> dict[str, Any]:
    """Run the ONNX Runtime snippet of ``dest``'s model card as written, in ``dest``; its
    variables (``outputs``: the model's output on zero inputs)."""
    card = (dest / "MODEL_CARD.md").read_text()
    snippet = card.split("ONNX Runtime (no PyTorch needed):")[1].split("```python")[1]
    namespace: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(dest)
    try:
        exec(snippet.split("```")[0], namespace)
    finally:
        os.chdir(cwd)
    return namespace
