"""``study.device`` and ``ray.gpus_per_trial``: parsed, stored, resolved, and handed to every
piece of model work of a study; the last tests run a trial on a real GPU (skipped without)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from evaluators import AccuracyEvaluator, LatencyEvaluator, Task, WeightCache
from evaluators.tasks import load_task
from search.backends import RaySettings
from search.cli import main
from search.objective import StudyContext, evaluate_config
from search.spec import StudyFileError, parse_spec
from search.testsplit import TestSplitEvaluator
from spaces import CompressionConfig
from tests.search._cluster import warm_cache
from tests.studyfile import study_dict, write_study

CUDA = torch.cuda.is_available()


def _spec(**sections: Any) -> Any:
    return parse_spec(study_dict(**sections))


# --- the setting --------------------------------------------------------------------------------


def test_device_defaults_to_auto_and_survives_the_stored_round_trip() -> None:
    spec = _spec()
    assert spec.study.device == "auto"
    for name in ("cpu", "cuda", "cuda:1"):
        spec = _spec(study={"device": name})
        assert spec.study.device == name
        assert parse_spec(spec.to_data()) == spec
        assert spec.to_data()["study"]["device"] == name


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "cuda:one", "cpu:0", "cuda\n"])
def test_a_device_of_no_known_form_names_the_key(bad: str) -> None:
    with pytest.raises(StudyFileError, match=r"'study\.device' must be one of \"auto\", \"cpu\""):
        _spec(study={"device": bad})
    with pytest.raises(StudyFileError, match=r"'study\.device' must be a string"):
        _spec(study={"device": 0})


def test_a_study_for_a_gpu_is_still_read_where_there_is_none() -> None:
    """Only the form is checked when parsing: status and report read it anywhere."""
    assert _spec(study={"device": "cuda:3"}).study.device == "cuda:3"


@pytest.mark.skipif(CUDA, reason="checks the machine without a GPU")
def test_running_on_a_missing_gpu_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = write_study(tmp_path, study={"device": "cuda"})
    code = main(["run", str(study), "--no-progress", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "'study.device' is 'cuda' but torch sees no CUDA GPU" in err[0]
    assert 'set it to "auto" or "cpu"' in err[0]


# --- Ray ----------------------------------------------------------------------------------------


def test_gpus_per_trial_defaults_to_none_reserved() -> None:
    ray = _spec().ray
    assert ray.gpus_per_trial == 0
    assert ray.resources() == {"cpu": 1}
    assert ray.workers_for(8) == 8


def test_gpus_per_trial_is_reserved_and_bounds_the_workers() -> None:
    ray = _spec(ray={"gpus_per_trial": 0.5, "cpus_per_trial": 2}).ray
    assert ray.resources() == {"cpu": 2, "gpu": 0.5}
    assert ray.workers_for(16, 1.0) == 2  # two trials share the one GPU
    assert ray.workers_for(16, 0.0) == 1  # none: still one, which Ray keeps pending
    assert RaySettings(gpus_per_trial=1, workers=3).workers_for(16, 1.0) == 3
    spec = _spec(ray={"gpus_per_trial": 1})
    assert parse_spec(spec.to_data()) == spec


@pytest.mark.parametrize("bad", [-1, math.inf])
def test_gpus_per_trial_must_be_a_number_at_least_0(bad: float) -> None:
    with pytest.raises((StudyFileError, ValueError), match=r"'ray\.gpus_per_trial' must be"):
        _spec(ray={"gpus_per_trial": bad})


def test_gpus_per_trial_needs_a_cuda_device() -> None:
    with pytest.raises(StudyFileError, match=r"'ray\.gpus_per_trial' needs a CUDA device"):
        _spec(study={"device": "cpu"}, ray={"gpus_per_trial": 1})
    with pytest.raises(StudyFileError, match=r"Ray picks each trial's GPU"):
        _spec(study={"device": "cuda:1"}, ray={"gpus_per_trial": 1})
    for device in ("auto", "cuda", "cuda:0"):
        assert _spec(study={"device": device}, ray={"gpus_per_trial": 1}).ray.gpus_per_trial == 1


# --- the study's context hands it on ------------------------------------------------------------


def test_the_context_hands_the_device_to_every_piece_of_work(
    warm_weights: Path, tmp_path: Path
) -> None:
    warm_cache(warm_weights, tmp_path / "out")
    ctx = StudyContext(_spec(study={"device": "cpu"}), tmp_path / "out")
    cpu = torch.device("cpu")
    assert ctx.device == cpu and ctx.pool.device == cpu
    assert ctx.latency_device == cpu
    evaluators = {type(e): e for e in ctx.evaluators}
    assert evaluators[AccuracyEvaluator].device == cpu  # type: ignore[attr-defined]
    assert evaluators[LatencyEvaluator].device == cpu  # type: ignore[attr-defined]
    predicted = StudyContext(_spec(latency={"mode": "predicted"}), tmp_path / "out")
    assert predicted.latency_device is None  # the lookup table is the CPU's


def test_cpu_and_auto_score_a_candidate_alike_without_a_gpu(
    warm_weights: Path, tmp_path: Path
) -> None:
    if CUDA:
        pytest.skip("auto is the GPU here")
    warm_cache(warm_weights, tmp_path / "out")
    config = CompressionConfig(student="w0.5", bits={"fc1": 4}, act_bits=8, rounding="gptq")
    figures = []
    for device in ("auto", "cpu"):
        ctx = StudyContext(_spec(study={"device": device}), tmp_path / "out")
        figures.append(evaluate_config(ctx, config, seed=1).figures)
    for key in ("accuracy", "size_bytes", "bops"):
        assert figures[0][key] == figures[1][key]


def _factory_with_device(*, cache: WeightCache, seed: int, device: torch.device) -> Task:
    from evaluators.tasks.digits import digits_mlp

    _factory_with_device.seen = device  # type: ignore[attr-defined]
    return digits_mlp(cache=cache, seed=seed, device=device)


def test_task_factories_that_take_a_device_get_it(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    builtins = {"with-device": _factory_with_device}
    load_task(
        name="with-device",
        factory=None,
        options={},
        builtins=builtins,
        cache=WeightCache(tmp_path),
        seed=0,
        device=cpu,
    )
    assert _factory_with_device.seen is cpu  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"'task\.options\.device' is reserved"):
        load_task(
            name="with-device",
            factory=None,
            options={"device": "cpu"},
            builtins=builtins,
            cache=WeightCache(tmp_path),
            seed=0,
            device=cpu,
        )


# --- a real GPU (skipped without one) ---------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_trial_runs_on_the_gpu(warm_weights: Path, tmp_path: Path) -> None:
    warm_cache(warm_weights, tmp_path / "out")
    ctx = StudyContext(_spec(study={"device": "cuda"}), tmp_path / "out")
    assert ctx.device.type == "cuda" and ctx.latency_device == ctx.device
    config = CompressionConfig(student="w0.5", bits={"fc1": 4}, act_bits=8, rounding="gptq")
    outcome = evaluate_config(ctx, config, seed=1)
    assert outcome.figures["accuracy"] > 0.5
    assert outcome.figures["latency_ms"] > 0
    assert not any(p.is_cuda for p in ctx.task.model.parameters())
    test = TestSplitEvaluator(ctx.task, device=ctx.device).evaluate(
        type("C", (), {"model": ctx.task.model, "artifact": b""})()
    )
    assert test["test_accuracy"] > 0.5
