"""Export one trial's model: packed artifact, configuration, ONNX file and a model card.

The candidate is rebuilt exactly as the driver built it (same config, seed ``study seed +
trial number``, students from the study's cache) and checked against the study: the
rebuilt artifact must have the stored ``size_bytes``. The folder holds

- ``model.safetensors``: the packed artifact (its length is the reported size);
- ``config.json``: the ``CompressionConfig`` (as ``CompressionConfig.to_json`` writes it, so
  the artifact and this file form a saved candidate);
- ``export.json``: the study, trial, task and seed and the measured figures;
- ``model.onnx``: the deployable graph (:func:`spaces.artifacts.export_onnx` with int8
  weights in QDQ form), input ``input``, output ``output``, dynamic batch size;
- ``MODEL_CARD.md``: figures, budgets, how it was chosen and how to load it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from evaluators import Metric, Split, Task
from search.rebuild import rebuild
from search.stored import StoredStudy
from spaces import Compressed
from spaces.artifacts import export_onnx, load_candidate

FILES = {
    "artifact": "model.safetensors",
    "config": "config.json",
    "meta": "export.json",
    "onnx": "model.onnx",
    "card": "MODEL_CARD.md",
}
_FIGURES = (
    "accuracy",
    "size_bytes",
    "latency_ms",
    "latency_p90_ms",
    "latency_cv",
    "final_latency_ms",
    "final_latency_spread",
    "bops",
    "test_accuracy",
    "test_accuracy_low",
    "test_accuracy_high",
)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_trial` wrote and measured.

    Attributes:
        folder: The export folder.
        trial: The trial exported.
        size_bytes: Length of ``model.safetensors`` (equal to the study's figure).
        test_accuracy: The rebuilt model's test accuracy in PyTorch.
        onnx_test_accuracy: ``model.onnx``'s test accuracy in onnxruntime.
    """

    folder: Path
    trial: int
    size_bytes: int
    test_accuracy: float
    onnx_test_accuracy: float

    def path(self, key: str) -> Path:
        return self.folder / FILES[key]


def onnx_outputs(path: Path, split: Split, *, batch_size: int = 256) -> torch.Tensor:
    """Outputs of an ONNX file on every row of ``split`` (onnxruntime, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outs = []
    for inputs, _ in split.batches(batch_size):
        feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
        outs.append(np.asarray(session.run(None, feed)[0]))
    return torch.from_numpy(np.concatenate(outs)).float()


def onnx_metric(path: Path, split: Split, metric: Metric) -> float:
    """The task metric of an ONNX file on ``split``."""
    return metric(onnx_outputs(path, split), split.targets)


def load_exported(folder: str | Path, task: Task) -> nn.Module:
    """The exported model in PyTorch, computing exactly what the evaluated candidate did.

    ``task`` is the study's task (``open_stored(STUDY).context().task``): its teacher or
    student constructor gives the architecture, shrunk to the stored channel counts.
    """
    return load_candidate(folder, task).model


def exportable_trial(stored: StoredStudy, trial_number: int) -> optuna.trial.FrozenTrial:
    """The complete trial ``trial_number``.

    Raises:
        ValueError: the trial does not exist or did not complete.
    """
    trials = {t.number: t for t in stored.study.get_trials(deepcopy=False)}
    trial = trials.get(trial_number)
    if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
        state = "does not exist" if trial is None else f"is {trial.state.name}"
        raise ValueError(
            f"Trial {trial_number} of study {stored.name!r} {state}; export a complete trial."
        )
    return trial


def export_trial(
    stored: StoredStudy,
    trial_number: int,
    dest: Path,
    *,
    figures: Mapping[str, float] | None = None,
    reason: str = "",
) -> ExportResult:
    """Rebuild trial ``trial_number`` and write the export folder ``dest``.

    Args:
        stored: The study.
        trial_number: The trial to export (a complete one).
        dest: The folder to write (created; existing files of the same names are replaced).
        figures: Extra figures for the card (test accuracy from the report, say).
        reason: Why this trial (the selection's explanation), for the card.

    Raises:
        ValueError: the trial does not exist or did not complete.
        RebuildMismatch: the rebuilt artifact is not the measured one.
    """
    trial = exportable_trial(stored, trial_number)
    ctx = stored.context()
    candidate = rebuild(ctx, trial)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / FILES["artifact"]).write_bytes(candidate.artifact)
    task = ctx.task
    test = task.test
    from evaluators import predict

    torch_test = task.metric(predict(candidate.model, test), test.targets)
    export_onnx(candidate, dest / FILES["onnx"], example_input=task.example_input, int8=True)
    onnx_test = onnx_metric(dest / FILES["onnx"], test, task.metric)
    measured = {
        k: trial.user_attrs[k]
        for k in _FIGURES
        if isinstance(trial.user_attrs.get(k), (int, float))
    }
    measured.update(
        {k: float(v) for k, v in (figures or {}).items() if v is not None and not math.isnan(v)}
    )
    measured["test_accuracy_torch_rebuilt"] = torch_test
    measured["test_accuracy_onnxruntime"] = onnx_test
    meta = {
        "format": 1,
        "study": stored.name,
        "trial": trial_number,
        "task": ctx.spec.task,
        "seed": ctx.spec.study.seed + trial_number,
        "compression": candidate.config.to_dict(),
        "figures": measured,
        "input_shape": [list(t.shape) for t in task.example_input],
        "input_dtype": [str(t.dtype).removeprefix("torch.") for t in task.example_input],
        "exported_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    (dest / FILES["config"]).write_text(candidate.config.to_json() + "\n")
    (dest / FILES["meta"]).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (dest / FILES["card"]).write_text(_card(stored, meta, candidate, reason), encoding="utf-8")
    return ExportResult(dest, trial_number, len(candidate.artifact), torch_test, onnx_test)


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}%" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _card(stored: StoredStudy, meta: Mapping[str, Any], candidate: Compressed, reason: str) -> str:
    from search.objective import describe

    f = meta["figures"]
    spec = stored.spec
    teacher = [
        t
        for t in stored.study.get_trials(deepcopy=False)
        if t.user_attrs.get("baseline") == "teacher"
    ]
    teacher_size = teacher[0].user_attrs.get("size_bytes") if teacher else None
    smaller = (
        f" ({teacher_size / f['size_bytes']:.1f}x smaller than the teacher)" if teacher_size else ""
    )
    interval = ""
    if "test_accuracy_low" in f and "test_accuracy_high" in f:
        interval = (
            f" [{_pct(f['test_accuracy_low'])}, {_pct(f['test_accuracy_high'])}] (95% bootstrap)"
        )
    runtime = spec.latency.runtime if spec is not None else "study runtime"
    rows = [
        ("validation accuracy (search split; chose this model)", _pct(f.get("accuracy"))),
        (
            "test accuracy (held out; reported, never used to choose)",
            _pct(f.get("test_accuracy", f["test_accuracy_torch_rebuilt"])) + interval,
        ),
        ("test accuracy of model.onnx in onnxruntime", _pct(f["test_accuracy_onnxruntime"])),
        ("packed size (model.safetensors)", f"{int(f['size_bytes']):,} B{smaller}"),
        _latency_row(f, runtime),
        (
            "latency while the search ran (timed once)",
            f"{f.get('latency_ms', math.nan):.3f} ms "
            f"(p90 {f.get('latency_p90_ms', math.nan):.3f} ms)",
        ),
    ]
    if "bops" in f:
        rows.append(("BOPs", f"{f['bops']:.4g}"))
    lat = spec.latency if spec is not None else None
    budget = spec.budget if spec is not None else None
    cfg = candidate.config
    layers = "\n".join(
        f"| {name} | {cfg.bits_of(name) if cfg.bits_of(name) < 32 else 'fp32'} "
        f"| {cfg.prune_of(name):.2f} |"
        for name in _layers(candidate)
    )
    measured_how = (
        f"with batch {lat.batch_size}, {lat.threads} thread(s), median of {lat.repeats} runs "
        f"after {lat.warmup} warm-up runs"
        if lat is not None
        else "as the study recorded"
    )
    cpu = stored.study.user_attrs.get("environment", {}).get("cpu", "the study machine")
    shapes = meta["input_shape"]
    dtypes = meta.get("input_dtype", ["float32"] * len(shapes))
    names = ["input"] if len(shapes) == 1 else [f"input{i}" for i in range(len(shapes))]
    inputs_text = ", ".join(
        f"`{n}` ({d}, shape (batch, {' x '.join(str(x) for x in shape[1:])}))"
        for n, d, shape in zip(names, dtypes, shapes, strict=True)
    )
    variables = ["x"] if len(names) == 1 else [f"x{i}" for i in range(len(names))]
    feeds = "".join(
        f"{v} = np.zeros((1, {', '.join(str(x) for x in shape[1:])}), dtype=np.{d})\n"
        for v, d, shape in zip(variables, dtypes, shapes, strict=True)
    )
    feed_dict = ", ".join(f'"{n}": {v}' for n, v in zip(names, variables, strict=True))
    load_torch = (
        "```python\n# needs the frontier package and the study (its task builds the architecture)\n"
        "from search.export import load_exported\nfrom search.stored import open_stored\n\n"
        f'task = open_stored(storage="{stored.storage_url}", study_name="{stored.name}")'
        ".context().task\n"
        'model = load_exported("path/to/this/folder", task)  # torch.nn.Module\n'
        "outputs = model(inputs)\n```"
    )
    return "\n".join(
        [
            f"# Model card: `{meta['study']}` trial {meta['trial']}",
            "",
            f"A compressed model of task `{meta['task']}` found by frontier: "
            f"{describe(candidate.config)}.",
            "",
            "## Measured figures",
            "",
            "| figure | value |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in rows],
            "",
            f"Latency was measured {measured_how}, on: {cpu}.{_final_how(stored)}",
            "",
            "## Why this model",
            "",
            "```text",
            reason or f"Trial {meta['trial']} was named on the command line (`--trial`).",
            "```",
            "",
            f"Study budgets: {_budget_text(budget)}.",
            "",
            "## Compression",
            "",
            f"Student `{candidate.config.student}`; per layer:",
            "",
            "| layer | weight bits | pruned share |",
            "| --- | --- | --- |",
            layers,
            "",
            "## Files",
            "",
            f"- `{FILES['artifact']}`: the packed artifact (bit-packed integer codes, float16 "
            "scales, sparse encodings); its length is the size above.",
            f"- `{FILES['config']}`: the compression config (student, bits and pruning per layer).",
            f"- `{FILES['meta']}`: study, trial, seed and measured figures.",
            f"- `{FILES['onnx']}`: the deployable ONNX graph (integer layers as int8 weights "
            "with DequantizeLinear, 8-bit activations as QuantizeLinear/DequantizeLinear "
            "pairs that ONNX Runtime runs on int8 kernels; other layers float32); "
            f"input{'s' if len(names) > 1 else ''} {inputs_text}, output `output`.",
            "",
            "## How to load it",
            "",
            "ONNX Runtime (no PyTorch needed):",
            "",
            "```python\nimport numpy as np\nimport onnxruntime as ort\n\n"
            f'session = ort.InferenceSession("{FILES["onnx"]}")\n'
            f"{feeds}"
            f"outputs = session.run(None, {{{feed_dict}}})[0]\n```",
            "",
            "PyTorch, from the packed artifact:",
            "",
            load_torch,
            "",
            f"Rebuild from the study: `frontier export STUDY --trial {meta['trial']}` (seed "
            f"{meta['seed']}; the rebuilt artifact is checked to have the same size).",
            "",
        ]
    )


def _final_how(stored: StoredStudy) -> str:
    how = stored.study.user_attrs.get("final_timing")
    if not isinstance(how, dict):
        return ""
    return (
        f" The final figure: {how.get('rounds')} interleaved rounds with the other front "
        f"points and the baselines, {how.get('repeats_per_round')} passes each per round "
        f"in quiet moments of the machine ({how.get('utc')})."
    )


def _latency_row(f: Mapping[str, Any], runtime: str) -> tuple[str, str]:
    """The quoted latency: the final figure, timed side by side with the teacher and the
    other front points at the end of the run (median over rounds, their spread)."""
    final = f.get("final_latency_ms")
    if not isinstance(final, (int, float)) or not math.isfinite(final):
        return (f"median latency ({runtime}, study machine)", "no final figure (see below)")
    spread = f.get("final_latency_spread", math.nan)
    return (
        f"median latency ({runtime}, study machine; final, timed side by side)",
        f"{final:.3f} ms (spread over rounds {100 * spread:.1f}%)",
    )


def _layers(candidate: Compressed) -> list[str]:
    from spaces import compressible_layers

    return list(compressible_layers(candidate.model))


def _budget_text(budget: Any) -> str:
    if budget is None:
        return "not recorded"
    parts = []
    if budget.max_size_bytes is not None:
        parts.append(f"size <= {budget.max_size_bytes:,} B")
    if budget.max_latency_ms is not None:
        parts.append(f"latency <= {budget.max_latency_ms} ms")
    if budget.max_accuracy_drop is not None:
        parts.append(f"accuracy drop <= {budget.max_accuracy_drop} points")
    return ", ".join(parts) or "none"
