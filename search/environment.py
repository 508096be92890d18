"""What a study records about itself when it is created: its settings and its machine.

Stored as Optuna study user attributes (``study_file``, ``environment``, ``results_dir``), so
``report``, ``status``, ``select`` or ``export`` of a study opened from its storage URL alone
knows how the study was run, and optuna-dashboard shows the same facts. ``study_file`` is the
study file as parsed TOML (:meth:`search.spec.StudySpec.to_data`), read back by the one
parser (:func:`search.spec.parse_spec`): every setting survives the round trip.
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

from evaluators.budgets import Budget
from evaluators.latency import LatencySettings
from evaluators.latency.machine import cpu_model
from search.objective_names import OBJECTIVES_ATTR
from search.spec import StudySettings, StudySpec, parse_spec
from spaces.compress import FinetuneSettings
from spaces.distillation import DistillationSettings
from spaces.space import SpaceSettings

log = logging.getLogger("frontier")

SPEC_ATTR = "study_file"
#: Where releases before the lossless form kept a partial dict of the settings.
LEGACY_SPEC_ATTR = "spec"
ENV_ATTR = "environment"
RESULTS_ATTR = "results_dir"

_PACKAGES = ("frontier", "torch", "optuna", "numpy", "pandas", "scikit-learn", "safetensors")


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
    if SPEC_ATTR not in attrs and LEGACY_SPEC_ATTR not in attrs:
        study.set_user_attr(SPEC_ATTR, spec.to_data())
    if ENV_ATTR not in attrs:
        study.set_user_attr(ENV_ATTR, environment_info(spec))
    if RESULTS_ATTR not in attrs and results_dir is not None:
        study.set_user_attr(RESULTS_ATTR, str(Path(results_dir).resolve()))


def spec_from_dict(data: Mapping[str, Any]) -> StudySpec:
    """The settings of a study created before the lossless form (``spec`` attribute).

    That form lost ``task.factory``, ``task.options``, ``storage``, ``early_stopping`` and
    ``ray``; they come back as their defaults.

    Raises:
        ValueError, TypeError, KeyError: the stored form does not fit this release.
    """
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
    attrs = study.user_attrs
    try:
        if isinstance(attrs.get(SPEC_ATTR), Mapping):
            return parse_spec(attrs[SPEC_ATTR])
        if isinstance(attrs.get(LEGACY_SPEC_ATTR), Mapping):
            return spec_from_dict(attrs[LEGACY_SPEC_ATTR])
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("study %r: its stored settings cannot be read (%s)", study.study_name, exc)
    return None
