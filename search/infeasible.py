"""Why a study has no feasible trial, in one line (``frontier run`` prints it, front.png shows it).

Every finished trial is counted once per reason it is not feasible: failed (its most common
``fail_reason``), stopped early, or over a budget (each limit of :data:`LIMITS` it exceeds, with
the smallest figure any trial reached against the limit, so the user sees how far off it is).
"""

from __future__ import annotations

import pandas as pd

from evaluators.budgets import LIMITS, Budget

_FINISHED = ("COMPLETE", "FAIL", "PRUNED")
#: Longest failure reason quoted (the first line of it).
_REASON_CHARS = 160


def why_nothing_feasible(trials: pd.DataFrame, budget: Budget | None = None) -> str:
    """One sentence saying why no trial of ``trials`` (a :func:`trials_frame`) is feasible.

    ``budget`` (the study's) adds each limit's value beside the smallest figure reached;
    without it only the figure is given.
    """
    finished = trials[trials["state"].isin(_FINISHED)]
    n = len(finished)
    if n == 0:
        return "No feasible trial: no trial has finished yet."
    failed = finished[finished["state"] == "FAIL"]
    if len(failed) == n:
        return f"No feasible trial: all {n} trials failed{_common_reason(failed)}."
    complete = finished[finished["state"] == "COMPLETE"]
    over = _over_budget(complete, budget)
    if len(over) == 1 and over[0][0] == n:
        return f"No feasible trial: all {n} trials are {over[0][1]}."
    parts = [f"{count} {text}" for count, text in over]
    if len(failed):
        parts.append(f"{len(failed)} failed{_common_reason(failed)}")
    stopped = int((finished["state"] == "PRUNED").sum())
    if stopped:
        parts.append(f"{stopped} stopped early")
    others = len(complete) - _count_over(complete)
    if others:
        parts.append(f"{others} complete but not feasible (a figure is missing)")
    return f"No feasible trial among {n}: {'; '.join(parts)}."


def _over_budget(complete: pd.DataFrame, budget: Budget | None) -> list[tuple[int, str]]:
    """``(count, "over budget.<key> (smallest <figure> > <limit>)")`` per limit exceeded."""
    out = []
    for limit in LIMITS:
        column = f"constraint.{limit.constraint}"
        if column not in complete:
            continue
        excess = complete[column].astype(float)
        excess = excess[excess > 0]
        if excess.empty:
            continue
        text = f"over budget.{limit.key}"
        value = getattr(budget, limit.field) if budget is not None else None
        if value is not None:
            # a constraint is the figure minus the limit
            smallest = limit.format(float(value) + float(excess.min()))
            text += f" (smallest {smallest} > {limit.format(float(value))})"
        out.append((len(excess), text))
    return out


def _count_over(complete: pd.DataFrame) -> int:
    """Trials over at least one budget."""
    columns = [c for c in complete.columns if c.startswith("constraint.")]
    if not columns:
        return 0
    return int((complete[columns].astype(float) > 0).any(axis=1).sum())


def _common_reason(failed: pd.DataFrame) -> str:
    """``" (<reason>)"``, or the most common reason and how many share it."""
    reasons = failed["fail_reason"].fillna("").astype(str).map(_first_line)
    counts = reasons.value_counts()
    reason, k = str(counts.index[0]) or "no reason recorded", int(counts.iloc[0])
    if k == len(failed):
        return f" ({reason})"
    return f" (most often, {k} of {len(failed)}: {reason})"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."
