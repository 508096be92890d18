"""The study file's schema: every section, its keys, and the type each key takes."""

from __future__ import annotations

import math
from typing import Any

# type tags of the schema: what a key takes, and how the message names it
_INT, _FLOAT, _STR, _BOOL = "an int", "a number", "a string", "true or false"
_INTS, _STRS, _SIZE, _DURATION = "a list of ints", "a list of strings", "a size", "a duration"
_PATHS = "a path, or a table of paths (train, validation, test)"

SCHEMA: dict[str, dict[str, str]] = {
    "study": {
        "name": _STR,
        "seed": _INT,
        "n_trials": _INT,
        "timeout": _DURATION,
        "sampler": _STR,
        "storage": _STR,
        "version": _INT,
        "objectives": _STRS,
        "device": _STR,
    },
    "task": {
        "name": _STR,
        "factory": _STR,
        "options": "a table of keyword arguments",
        # a model from another framework (evaluators/tasks/importers.py): one of these three,
        # with `data` (a file, or a table of train / validation / test files) and `kind`
        "onnx": _STR,
        "keras": _STR,
        "huggingface": _STR,
        "data": _PATHS,
        "kind": _STR,
    },
    "space": {
        "bits": _INTS,
        "prune_max": _FLOAT,
        "prune_step": _FLOAT,
        "students": _STRS,
        "layers": "a table of layer names",
        "channels_max": _FLOAT,
        "channels_step": _FLOAT,
        "channel_importance": _STR,
        "heads_max": _FLOAT,
        "heads_step": _FLOAT,
        "act_bits": _INTS,
        "act_mode": _STRS,
        "act_codes": _INTS,
        "act_calibration": _STR,
        "int8_target": _STR,
        "granularity": _STRS,
        "rounding": _STRS,
        "custom_students": "a table of student names",
    },
    "distillation": {"temperature": _FLOAT, "alpha": _FLOAT, "epochs": _INT, "lr": _FLOAT},
    "finetune": {"epochs": _INT, "lr": _FLOAT},
    "latency": {
        "batch_size": _INT,
        "threads": _INT,
        "warmup": _INT,
        "repeats": _INT,
        "runtime": _STR,
        "mode": _STR,
        "builds": _INT,
        "quiet": _BOOL,
    },
    "budget": {
        "max_size": _SIZE,
        "max_latency_ms": _FLOAT,
        "max_accuracy_drop": _FLOAT,
        "max_bops": _FLOAT,
    },
    "storage": {"heartbeat_interval": _INT, "grace_period": _INT, "max_retry": _INT},
    "early_stopping": {
        "enabled": _BOOL,
        "min_dominating": _INT,
        "rungs": _INTS,
        "startup_trials": _INT,
        "margin": _FLOAT,
    },
    "ray": {"cpus_per_trial": _INT, "workers": _INT, "address": _STR, "gpus_per_trial": _FLOAT},
    "sensitivity": {
        "enabled": _BOOL,
        "method": _STR,
        "rows": _INT,
        "warm_starts": _INT,
        "int8_warm_starts": _INT,
        "prune_space": _BOOL,
        "max_probe_s": _FLOAT,
        "max_probe_share": _FLOAT,
    },
}
LAYER_SCHEMA = {"bits": _INTS, "prune_max": _FLOAT, "channels_max": _FLOAT, "heads_max": _FLOAT}


def type_ok(tag: str, value: Any) -> bool:
    """Whether ``value`` has the type that the schema's ``tag`` names."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if tag == _INT:
        return is_int(value)
    if tag == _FLOAT:
        return (is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if tag == _STR:
        return isinstance(value, str)
    if tag == _BOOL:
        return isinstance(value, bool)
    if tag == _INTS:
        return isinstance(value, list) and all(is_int(v) for v in value)
    if tag == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if tag == _PATHS:
        return isinstance(value, str) or (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        )
    if tag in (_SIZE, _DURATION):
        return True  # parsed (and reported) by their own functions
    return isinstance(value, dict)
