"""What a study records about itself when it is created: its settings and its machine.

Stored as Optuna study user attributes (``spec``, ``environment``, ``results_dir``), so a
report, ``select`` or ``export`` of a study opened from any storage URL knows how the study
was run without the study file, and optuna-dashboard shows the same facts.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna

from search.objective_names import OBJECTIVES_ATTR
from search.spec import StudySettings, StudySpec
from spaces.compress import FinetuneSettings
from spaces.distillation import DistillationSettings

log = logging.getLogger("frontier")

SPEC_ATTR = "spec"
ENV_ATTR = "environment"
RESULTS_ATTR = "results_dir"

_PACKAGES = ("frontier", "torch", "optuna", "numpy", "pandas", "scikit-learn", "safetensors")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_info(spec: StudySpec) -> dict[str, Any]:
    """Versions, machine and the measurement settings that make figures comparable."""
    return {
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": spec.latency.threads,
        "latency_runtime": spec.latency.runtime,
        "seed": spec.study.seed,
        "sampler": spec.study.sampler,
        "versions": {name: _version(name) for name in _PACKAGES},
    }


def record_study_info(
    study: optuna.Study, spec: StudySpec, results_dir: str | Path | None = None
) -> None:
    """Store the study's settings, environment, results folder and objectives, once.

    A study created by an older release gets them the first time it is opened again (its
    objectives are the defaults: :func:`search.driver.open_study` checked them).
    """
    attrs = study.user_attrs
    if study.metric_names is None:  # optuna-dashboard labels the objectives with these
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.study.objectives))
    if OBJECTIVES_ATTR not in attrs:
        study.set_user_attr(OBJECTIVES_ATTR, list(spec.study.objectives))
    if SPEC_ATTR not in attrs:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    if ENV_ATTR not in attrs:
        study.set_user_attr(ENV_ATTR, environment_info(spec))
    if RESULTS_ATTR not in attrs and results_dir is not None:
        study.set_user_attr(RESULTS_ATTR, str(Path(results_dir).resolve()))


def spec_from_dict(data: Mapping[str, Any]) -> StudySpec:
    """Inverse of :meth:`StudySpec.to_dict` (the form stored in the study).

    Raises:
        ValueError, TypeError, KeyError: the stored form does not fit this release.
    """
    from evaluators.budgets import Budget
    from evaluators.latency import LatencySettings
    from spaces.space import SpaceSettings

    space = dict(data["space"])
    students = space.pop("students", None)
    return StudySpec(
        study=StudySettings(**data["study"]),
        task=data["task"],
        space=SpaceSettings(
            **{
                **space,
                "bits": tuple(space.get("bits", ())) or SpaceSettings().bits,
                "layer_bits": {k: tuple(v) for k, v in space.get("layer_bits", {}).items()},
            },
            students=tuple(students) if students is not None else None,
        ),
        distillation=DistillationSettings(**data["distillation"]),
        finetune=FinetuneSettings(**data["finetune"]),
        latency=LatencySettings(**data["latency"]),
        budget=Budget(**data["budget"]),
        version=int(data.get("version", 1)),
    )


def stored_spec(study: optuna.Study) -> StudySpec | None:
    """The settings the study was created with, or ``None`` when not recorded or unreadable."""
    data = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(data, Mapping):
        return None
    try:
        return spec_from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("study %r: its stored settings cannot be read (%s)", study.study_name, exc)
        return None
