"""Study files: TOML in, a validated, frozen `StudySpec` out.

Every key is checked against a declarative schema (section, key, type) before any
dataclass sees it, so a mistake gives one line that names the key and what is allowed.
Two keys name Python code that frontier imports and runs: ``task.factory`` and the
constructors in ``[space.custom_students]`` (``package.module:function``; any importable
function, ``os:system`` included), so a study file must be trusted like code. Everything else
in it is data.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from evaluators.budgets import Budget
from evaluators.latency import LatencySettings
from search.backends import RaySettings
from search.early_stopping import EarlyStoppingSettings
from search.objective_names import DEFAULT_OBJECTIVES, check_objectives
from search.spec_schema import LAYER_SCHEMA, SCHEMA, type_ok
from search.storage import StorageSettings
from search.units import StudyFileError, parse_duration, parse_latency, parse_size
from spaces.compress import FinetuneSettings
from spaces.devices import check_device_name
from spaces.distillation import DistillationSettings
from spaces.sensitivity import SensitivitySettings
from spaces.space import SpaceSettings

__all__ = [
    "SPEC_VERSION",
    "StudyFileError",
    "StudySettings",
    "StudySpec",
    "load_spec",
    "parse_duration",
    "parse_latency",
    "parse_size",
    "parse_spec",
]

SPEC_VERSION = 1
SAMPLERS = ("tpe", "nsga2", "random")
#: Largest study seed. Samplers are seeded with numpy (< 2**32) at ``seed`` plus the trials
#: already stored and 7919 per worker, so the study seed stops at 2**31 - 1 to leave room.
MAX_SEED = 2**31 - 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class StudySettings:
    """The ``[study]`` section."""

    name: str
    seed: int = 0
    n_trials: int = 60
    timeout_s: float | None = None
    sampler: str = "tpe"
    storage: str | None = None
    #: What the study optimises (see :mod:`search.objective_names`), in canonical order.
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    #: Where training and evaluation run: ``"auto"`` (CUDA when present), ``"cpu"``,
    #: ``"cuda"`` or ``"cuda:N"`` (see :mod:`spaces.devices`). Only the form is checked
    #: here; whether the machine has the GPU is checked where the study runs, so a study
    #: run on a GPU machine can be read anywhere.
    device: str = "auto"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise StudyFileError(
                f"'study.name' must start with a letter or digit and hold only letters, digits, "
                f"'_', '-' and '.'. Got {self.name!r} instead."
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not (0 <= self.seed <= MAX_SEED)
        ):
            raise StudyFileError(
                f"'study.seed' must be an int in the range [0, {MAX_SEED}]. "
                f"Got {self.seed!r} instead."
            )
        if self.n_trials < 1:
            raise StudyFileError(f"'study.n_trials' must be >= 1. Got {self.n_trials} instead.")
        if self.sampler not in SAMPLERS:
            raise StudyFileError(
                f"'study.sampler' must be one of {list(SAMPLERS)}. Got {self.sampler!r} instead."
            )
        try:
            object.__setattr__(self, "objectives", check_objectives(self.objectives))
            check_device_name(self.device, key="study.device")
        except ValueError as exc:
            raise StudyFileError(str(exc)) from None


@dataclass(frozen=True)
class StudySpec:
    """A whole study file, validated. Build it with :func:`load_spec` or :func:`parse_spec`."""

    study: StudySettings
    task: str
    space: SpaceSettings = field(default_factory=SpaceSettings)
    distillation: DistillationSettings = field(default_factory=DistillationSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)
    budget: Budget = field(default_factory=Budget)
    storage: StorageSettings = field(default_factory=StorageSettings)
    early_stopping: EarlyStoppingSettings = field(default_factory=EarlyStoppingSettings)
    ray: RaySettings = field(default_factory=RaySettings)
    sensitivity: SensitivitySettings = field(default_factory=SensitivitySettings)
    version: int = SPEC_VERSION
    #: ``[task] factory``: the user's own ``"package.module:function"`` (instead of a name).
    task_factory: str | None = None
    #: ``[task.options]``: keyword arguments for the task's factory.
    task_options: Mapping[str, Any] = field(default_factory=dict)
    #: A model from another framework (:mod:`evaluators.tasks.importers`): ``{"onnx" | "keras"
    #: | "huggingface": path, "data": path or {split: path}, "kind": ...}``, paths absolute.
    task_source: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, field by field (for the report's settings section)."""
        # not dataclasses.asdict: it deep-copies values, and mappingproxy cannot be copied
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_data(self) -> dict[str, Any]:
        """The study file that gives this spec, as parsed TOML: ``parse_spec(spec.to_data())
        == spec``. The study's storage keeps this form, so every setting survives the round
        trip through it (a factory task and its options, early stopping, storage, Ray)."""
        data: dict[str, Any] = {}
        for section, value in (
            ("study", self.study),
            ("space", self.space),
            ("distillation", self.distillation),
            ("finetune", self.finetune),
            ("latency", self.latency),
            ("budget", self.budget),
            ("storage", self.storage),
            ("early_stopping", self.early_stopping),
            ("ray", self.ray),
            ("sensitivity", self.sensitivity),
        ):
            table = {
                _FILE_KEYS.get(f"{section}.{f.name}", f.name): _plain(getattr(value, f.name))
                for f in fields(value)
            }
            data[section] = {k: v for k, v in table.items() if v is not None}
        task: dict[str, Any] = (
            _plain(self.task_source)
            if self.task_source
            else {"factory": self.task_factory}
            if self.task_factory
            else {"name": self.task}
        )
        if self.task_options:
            task["options"] = _plain(self.task_options)
        data["task"] = task
        space = data["space"]
        layers: dict[str, dict[str, Any]] = {}
        for key, file_key in (
            ("layer_bits", "bits"),
            ("layer_prune_max", "prune_max"),
            ("layer_channels_max", "channels_max"),
            ("layer_heads_max", "heads_max"),
        ):
            for layer, v in space.pop(key).items():
                layers.setdefault(layer, {})[file_key] = v
        if layers:
            space["layers"] = layers
        if not space["custom_students"]:
            del space["custom_students"]
        return data


#: Settings fields whose study-file key has another name (``section.field`` -> key).
_FILE_KEYS = {"study.timeout_s": "timeout", "budget.max_size_bytes": "max_size"}


def _plain(value: Any) -> Any:
    """JSON-ready data: dataclasses and mappings as dicts, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file.

    Raises:
        StudyFileError: the file is missing, not TOML, or has a wrong key or value.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(f"Study file {str(p)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(f"Study file {str(p)!r} cannot be read: {exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"Study file {str(p)!r} is not valid TOML: {exc}.") from None
    return parse_spec(data, default_name=p.stem, base_dir=p.resolve().parent)


#: ``[task]`` keys that name a model from another framework (:mod:`evaluators.tasks.importers`).
SOURCE_KEYS = ("onnx", "keras", "huggingface")


def _task_source(task: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """``[task]``'s model from another framework, its ``data`` and ``kind``, paths absolute;
    ``{}`` for a built-in or factory task."""
    keys = [k for k in SOURCE_KEYS if k in task]
    if not keys:
        for extra in ("data", "kind"):
            if extra in task:
                raise StudyFileError(
                    f"'task.{extra}' goes with 'task.onnx', 'task.keras' or 'task.huggingface' "
                    "(a model from another framework); a built-in or factory task takes its "
                    "settings in [task.options]."
                )
        return {}
    base = base_dir if base_dir is not None else Path.cwd()

    def absolute(path: str) -> str:
        return str((base / Path(path).expanduser()).resolve())

    source: dict[str, Any] = {k: absolute(task[k]) for k in keys}
    if "data" not in task:
        raise StudyFileError(
            f"Missing key 'task.data': the data of the 'task.{keys[0]}' model (README, "
            '"Models from other frameworks").'
        )
    data = task["data"]
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"train", "validation", "test"})
        if unknown:
            raise StudyFileError(
                f"Unknown key(s) {unknown} in 'task.data'; a table of data files takes "
                "'train', 'validation' and 'test'."
            )
        source["data"] = {split: absolute(path) for split, path in data.items()}
    else:
        source["data"] = absolute(data)
    if "kind" in task:
        source["kind"] = task["kind"]
    return source


def _check_table(where: str, table: Any, schema: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise StudyFileError(f"'{where}' must be a table ([{where}]). Got {table!r} instead.")
    for key, value in table.items():
        if key not in schema:
            raise StudyFileError(
                f"Unknown key '{where}.{key}'; allowed keys in [{where}]: {sorted(schema)}."
            )
        if not type_ok(schema[key], value):
            raise StudyFileError(
                f"'{where}.{key}' must be {schema[key]}. Got {value!r} "
                f"({type(value).__name__}) instead."
            )
    return dict(table)


def parse_spec(
    data: Mapping[str, Any], *, default_name: str = "study", base_dir: Path | None = None
) -> StudySpec:
    """Validate a study file's parsed TOML. Relative paths in ``[task]`` (a model from another
    framework and its data) are relative to ``base_dir`` (the study file's folder; default:
    the working directory) and are stored absolute."""
    for section in data:
        if section not in SCHEMA:
            raise StudyFileError(
                f"Unknown section [{section}]; allowed sections: {sorted(SCHEMA)}."
            )
    t = {name: _check_table(name, data.get(name, {}), keys) for name, keys in SCHEMA.items()}
    task_name, task_factory = t["task"].get("name"), t["task"].get("factory")
    source = _task_source(t["task"], base_dir)
    given = [k for k in ("name", "factory", *SOURCE_KEYS) if k in t["task"]]
    if not given:
        raise StudyFileError(
            "Missing key 'task.name': name a built-in task, e.g. \"digits-cnn\", set "
            "'task.factory' to your own \"package.module:function\", or point 'task.onnx', "
            "'task.keras' or 'task.huggingface' at a model file or folder."
        )
    if len(given) > 1:
        names = " and ".join(f"'task.{k}'" for k in given)
        raise StudyFileError(f"Set one of {names}, not several: each names the model.")
    if source:
        task_name = f"{given[0]}:{t['task'][given[0]]}"
    version = t["study"].pop("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise StudyFileError(
            f"'study.version' {version} is not supported; this release reads version "
            f"{SPEC_VERSION}."
        )
    layers = t["space"].pop("layers", {})
    layer_bits: dict[str, tuple[int, ...]] = {}
    layer_prune: dict[str, float] = {}
    layer_channels: dict[str, float] = {}
    layer_heads: dict[str, float] = {}
    for layer, table in layers.items():
        checked = _check_table(f"space.layers.{layer}", table, LAYER_SCHEMA)
        if "bits" in checked:
            layer_bits[layer] = tuple(checked["bits"])
        if "prune_max" in checked:
            layer_prune[layer] = checked["prune_max"]
        if "channels_max" in checked:
            layer_channels[layer] = checked["channels_max"]
        if "heads_max" in checked:
            layer_heads[layer] = checked["heads_max"]
    custom = t["space"].pop("custom_students", {})
    for name, target in custom.items():
        if not isinstance(target, str):
            raise StudyFileError(
                f"'space.custom_students.{name}' must be a string like "
                f'"package.module:function". Got {target!r} instead.'
            )
    for key in ("act_bits", "act_mode", "act_codes", "granularity", "rounding"):
        if key in t["space"]:
            t["space"][key] = tuple(t["space"][key])
    study = dict(t["study"])
    if "timeout" in study:
        study["timeout_s"] = parse_duration(study.pop("timeout"))
    budget = dict(t["budget"])
    if "max_size" in budget:
        budget["max_size_bytes"] = parse_size(budget.pop("max_size"))
    students = t["space"].pop("students", None)
    early = dict(t["early_stopping"])
    if "rungs" in early:
        early["rungs"] = tuple(early["rungs"])
    try:
        return StudySpec(
            study=StudySettings(**{"name": default_name, **study}),
            task=str(task_name if task_name is not None else task_factory),
            task_factory=task_factory,
            task_options=dict(t["task"].get("options", {})),
            task_source=source,
            space=SpaceSettings(
                **t["space"],
                students=tuple(students) if students is not None else None,
                layer_bits=layer_bits,
                layer_prune_max=layer_prune,
                layer_channels_max=layer_channels,
                layer_heads_max=layer_heads,
                custom_students=custom,
            ),
            distillation=DistillationSettings(**t["distillation"]),
            finetune=FinetuneSettings(**t["finetune"]),
            latency=LatencySettings(**t["latency"]),
            budget=Budget(**budget),
            storage=StorageSettings(**t["storage"]),
            early_stopping=EarlyStoppingSettings(**early),
            ray=_ray(t["ray"], study.get("device", "auto")),
            sensitivity=_sensitivity(t["sensitivity"], budget),
        )
    except StudyFileError:
        raise
    except ValueError as exc:
        raise StudyFileError(str(exc)) from None


def _ray(table: Mapping[str, Any], device: str) -> RaySettings:
    """``[ray]``; GPUs per trial need a study that runs on CUDA, on the GPU Ray assigns."""
    settings = RaySettings(**table)
    if settings.gpus_per_trial > 0 and device == "cpu":
        raise StudyFileError(
            "'ray.gpus_per_trial' needs a CUDA device, but 'study.device' is \"cpu\"; set "
            'study.device = "auto" or "cuda", or gpus_per_trial = 0.'
        )
    if settings.gpus_per_trial > 0 and device.startswith("cuda:") and device != "cuda:0":
        raise StudyFileError(
            f"'study.device' is {device!r}, but with 'ray.gpus_per_trial' Ray picks each "
            'trial\'s GPU (it is cuda:0 in the trial); set study.device = "cuda".'
        )
    return settings


def _sensitivity(table: Mapping[str, Any], budget: Mapping[str, Any]) -> SensitivitySettings:
    """``[sensitivity]``; space pruning compares a layer's loss with the accuracy budget, so
    it needs one."""
    settings = SensitivitySettings(**table)
    if settings.enabled and settings.prune_space and budget.get("max_accuracy_drop") is None:
        raise StudyFileError(
            "'sensitivity.prune_space' needs 'budget.max_accuracy_drop' (choices are dropped "
            "when one layer alone loses more than it); set one, or set prune_space = false."
        )
    return settings
