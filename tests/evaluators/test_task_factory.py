"""Your own task: the README's worked example runs for real; mistakes end in one line."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from search.cli import main
from tests.conftest import REPO, run_cli
from tests.studyfile import write_study


def readme_example(name: str) -> str:
    """The README code block that follows ``<!-- example: NAME -->``."""
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README has no example block {name!r}"
    return m.group(1)


@pytest.mark.slow
def test_the_readme_worked_example_runs_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "my_tasks.py").write_text(readme_example("my_tasks.py"))
    study = tmp_path / "wine.toml"
    study.write_text(readme_example("wine.toml"))
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env_path}"
    try:
        res = run_cli("run", str(study), "--n-trials", "5", "--no-progress")
    finally:
        os.environ["PYTHONPATH"] = env_path
    assert res.returncode == 0, res.stderr
    front = pd.read_csv(tmp_path / "results" / "wine" / "front.csv")
    assert len(front) >= 1 and (front["accuracy"] > 0.8).all()
    assert {"test_accuracy", "test_accuracy_low", "test_accuracy_high", "bops"} <= set(front)
    assert "student" in front and "fc1" in " ".join(front.columns)


BAD_TASKS = """
import torch
from torch import nn
from evaluators import Split, Task

def data():
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    return Split((x,), y)

def not_a_task():
    return 42

def no_layers():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))
        def forward(self, x):
            return x * self.w
    d = data()
    return Task("s", Scale(), d, d, d, (d.inputs[0][:1],))

def tied():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    d = data()
    return Task("t", model, d, d, d, (d.inputs[0][:1],))

def broken(width=4):
    raise RuntimeError("the data file is missing")

def wrong_input():
    d = data()
    return Task("w", nn.Sequential(nn.Linear(3, 2)), d, d, d, (d.inputs[0][:1],))

def bare():
    d = data()
    return Task("b", nn.Linear(4, 2), d, d, d, (d.inputs[0][:1],))
"""


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        ("nowhere_mod:f", "", r"'task.factory' = 'nowhere_mod:f': cannot import module"),
        ("bad_tasks:missing", "", r"module 'bad_tasks' has no 'missing'"),
        ("bad_tasks", {}, r"'task.factory' must look like \"package.module:function\""),
        ("bad_tasks:not_a_task", {}, r"returned int, not an evaluators.Task"),
        ("bad_tasks:no_layers", {}, r"no layer the search can compress .*nn.Linear"),
        ("bad_tasks:tied", {}, r"layers '0' and '1' share one weight tensor"),
        ("bad_tasks:broken", {}, r"raised RuntimeError: the data file is missing"),
        ("bad_tasks:broken", {"colour": 1}, r"'task.options' do not fit .*colour"),
        ("bad_tasks:wrong_input", {}, r"the model fails on its example_input"),
        ("bad_tasks:bare", {}, r"the model is a bare nn.Linear; .*wrap it"),
    ],
)
def test_a_bad_factory_ends_with_one_line_naming_the_problem(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    factory: str,
    options: dict[str, object],
    message: str,
) -> None:
    (tmp_path / "bad_tasks.py").write_text(BAD_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("bad_tasks", None)
    task: dict[str, object] = {"factory": factory}
    if options:
        task["options"] = options
    study = write_study(tmp_path, defaults=False, study={"name": "s"}, task=task)
    code = main(["run", str(study), "--no-progress", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("frontier: error: "), err
    assert re.search(message, err[0]), err[0]


def test_name_and_factory_together_are_refused(tmp_path: Path) -> None:
    from search.spec import StudyFileError, parse_spec

    with pytest.raises(StudyFileError, match="not several"):
        parse_spec({"study": {"name": "s"}, "task": {"name": "digits-cnn", "factory": "a:b"}})
