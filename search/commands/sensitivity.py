"""``frontier sensitivity``: the per-layer sensitivity of a study's models, before any search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from search.commands._common import locate_study
from search.spec import StudyFileError

#: Rows of the printed table per model (the most sensitive layers first).
SHOWN_LAYERS = 12


def sensitivity_command(
    study_file: str | Path,
    *,
    out: Path | None = None,
    models: Sequence[str] = (),
) -> int:
    """Measure (or read from the study's cache) the sensitivity of each model, print the
    per-layer table and write ``sensitivity.csv`` and ``sensitivity-<model>.png`` (heatmaps:
    layer x bits, layer x pruning ratio) to the results folder; exit code 0.

    Args:
        study_file: The study file (TOML).
        out: The results folder; default ``<study file's folder>/results/<study name>``.
        models: The models to probe (``"teacher"``, student names); default: the teacher.

    Raises:
        StudyFileError: the study file is invalid, or names a model the space lacks.
    """
    spec, results_dir, _ = locate_study(study_file, out=out, storage=None)
    from search.objective import StudyContext
    from search.report.sensitivity import sensitivity_frame, sensitivity_table, write_heatmaps
    from search.sensitivities import sensitivity_tables

    print(f"frontier: study {spec.study.name!r} on task {spec.task!r}; results in {results_dir}")
    print("frontier: preparing the teacher (trained once, then cached) ...", flush=True)
    try:
        ctx = StudyContext(spec, results_dir)
    except ValueError as exc:
        raise StudyFileError(str(exc)) from None
    chosen = list(models) or ["teacher"]
    unknown = [m for m in chosen if m not in ctx.space.students and m != "teacher"]
    if unknown:
        raise StudyFileError(
            f"Unknown model(s) {unknown} for --model; choose from {ctx.space.students}."
        )
    print(f"frontier: measuring per-layer sensitivity of {', '.join(chosen)} ...", flush=True)
    tables = sensitivity_tables(ctx.pool, ctx.full_space, spec, chosen)
    frame = sensitivity_frame({m: t.to_dict() for m, t in tables.items()})
    csv = results_dir / "sensitivity.csv"
    frame.to_csv(csv, index=False)
    pngs = []
    for model, table in tables.items():
        print(
            f"\n{model}: {table.method} on {table.rows} validation rows, {table.seconds:.1f}s; "
            f"{table.metric} {table.base_metric:.4f} unmodified"
        )
        wide = layer_table(frame[frame["model"] == model])
        # the report's order (search.report.sensitivity): most sensitive layer first
        order = [layer for layer in sensitivity_table(frame, model)["layer"] if layer in wide.index]
        print(wide.loc[order].head(SHOWN_LAYERS).to_string())
        pngs.append(write_heatmaps(frame, results_dir / f"sensitivity-{model}.png", model=model))
    print(f"\nfrontier: wrote {csv} and {', '.join(str(p) for p in pngs)}.")
    return 0


def layer_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: the metric drop (points; where measured, else the output
    distortion) at each probed bit width and pruning ratio."""
    measured = frame["metric_drop"].notna().any()
    value = 100 * frame["metric_drop"] if measured else frame["distortion"]
    label = frame["kind"].map({"bits": "{:g} bits", "prune": "prune {:g}", "channels": "ch {:g}"})
    cols = [lab.format(v) for lab, v in zip(label, frame["value"], strict=True)]
    wide = (
        frame.assign(column=cols, shown=value)
        .pivot_table(index="layer", columns="column", values="shown", aggfunc="first", sort=False)
        .round(3 if measured else 5)
    )
    return wide
