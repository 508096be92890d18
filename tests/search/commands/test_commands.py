"""The commands called as functions, without the argument parser, and the parser's errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from evaluators.budgets import Budget
from search.commands import EXIT_NOTHING_SELECTED, select_command, status_command
from search.spec import StudyFileError
from tests.conftest import cli_in_process
from tests.search._small_studies import SmallStudies


def _synthetic_study(url: str, name: str) -> None:
    """A study of three complete trials recorded directly (no model is built)."""
    study = optuna.create_study(
        study_name=name, storage=url, directions=["maximize", "minimize", "minimize"]
    )
    for baseline, acc, size, lat in [
        ("teacher", 0.98, 100_000.0, 1.0),
        ("", 0.97, 10_000.0, 0.5),
        ("", 0.90, 20_000.0, 0.8),  # dominated by the one above
    ]:
        attrs = {"baseline": baseline, "accuracy": acc, "size_bytes": size, "latency_ms": lat}
        study.add_trial(
            optuna.trial.create_trial(values=[acc, size, lat], user_attrs=attrs, params={})
        )


def test_status_command_reads_a_study_from_its_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _synthetic_study(url, "syn")
    assert status_command(storage=url, study_name="syn") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "study: syn" in lines
    assert "trials: 3 counted (3 complete)" in lines
    assert "front: 2 points" in lines


def test_commands_raise_on_a_bad_study_instead_of_exiting(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="Name a study file or storage file, or --storage URL"):
        status_command()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _synthetic_study(url, "syn")
    with pytest.raises(StudyFileError, match="No study 'nope'"):
        status_command(storage=url, study_name="nope")
    with pytest.raises(StudyFileError):
        select_command(storage=url, names=["syn", "other"])  # one study, not two


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-drop", "-1", "'--max-drop' must be a number >= 0. Got -1.0 instead."),
        ("--max-bops", "0", "'--max-bops' must be a number > 0. Got 0.0 instead."),
    ],
)
def test_a_bad_budget_flag_is_one_line_naming_it_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    # the budget is checked before the study is opened: the study file need not exist
    for command in ("select", "export"):
        res = cli_in_process(capsys, command, str(tmp_path / "none.toml"), flag, value)
        assert res.returncode == 2
        assert res.stderr == f"frontier: error: {message}\n"


def test_a_budget_flag_that_is_no_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    res = cli_in_process(capsys, "select", "x.toml", "--max-drop", "half")
    assert res.returncode == 2
    assert "argument --max-drop: must be a number, got 'half'" in res.stderr


@pytest.mark.slow
def test_select_command_prints_what_the_command_line_prints(
    small_studies: SmallStudies,
    capsys: pytest.CaptureFixture[str],
) -> None:
    budget = Budget(max_size_bytes=30_000)
    code = select_command(str(small_studies.joint), budget=budget, out=small_studies.root)
    direct = capsys.readouterr().out
    assert code == 0 and "Selected trial " in direct
    res = cli_in_process(
        capsys,
        "select",
        str(small_studies.joint),
        "--out",
        str(small_studies.root),
        "--max-size",
        "30KB",
    )
    assert res.returncode == 0 and res.stdout == direct

    impossible = Budget(max_size_bytes=1, max_latency_ms=1e-6)
    code = select_command(str(small_studies.joint), budget=impossible, out=small_studies.root)
    assert code == EXIT_NOTHING_SELECTED
    assert "No front point meets the budgets" in capsys.readouterr().out
