"""Pick one model from a Pareto front under deployment budgets, and say why.

Validation chooses, the test split reports: the best point is the front point that meets every
budget with the highest **validation** accuracy, and the accuracy drop is measured from the
teacher's validation accuracy; a point's test accuracy (95% interval) is shown beside it and
never ranks or filters. Latency is the final figure, timed side by side with the teacher at
the end of the run (``final_latency_ms``, :mod:`search.final`), or the search-time figure for
a point without one. Ties go to the smaller model (then the faster one, then the earlier
trial). When no point
meets the budgets, the closest one is named with what it misses by, and for each budget the
value that would admit a point if that budget alone were relaxed.

"Closest" is the point with the smallest total relative excess: bytes and milliseconds over
their budgets are divided by the budget, accuracy points over the drop budget by
``max(drop budget, 1 point)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from evaluators.budgets import LIMIT_BY_FIELD, Budget
from search.results import quoted_latency


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select_point`.

    Attributes:
        table: One row per front point: ``trial``, ``score`` (the validation accuracy ranked
            on), ``drop_points``, ``latency_ms`` (the latency checked and quoted: the final
            one where known), ``search_latency_ms`` (the search-time figure),
            ``latency_basis`` (``"final"`` or ``"search"``), ``excess.*`` (amount over each
            budget, 0 when met), ``meets``, ``rank`` (1 = chosen), and the front's own
            columns (``summary``, ``techniques``, ... where it has them).
        budget: The budget applied.
        reference_accuracy: The teacher's validation accuracy that drops are measured from.
        chosen: The selected trial number, or ``None`` when no point meets the budgets.
        closest: The point nearest to meeting the budgets when none does.
        relaxations: Per budget field (``max_size_bytes``, ...), the value that would admit
            a point if only that budget were relaxed, and that point's trial; ``None`` when
            relaxing it alone does not help.
    """

    table: pd.DataFrame
    budget: Budget
    reference_accuracy: float
    chosen: int | None
    closest: int | None
    relaxations: dict[str, tuple[float, int] | None]

    def row(self, trial: int) -> pd.Series:
        return self.table.loc[self.table["trial"] == trial].iloc[0]


def select_point(
    front: pd.DataFrame,
    budget: Budget,
    *,
    reference_accuracy: float,
) -> Selection:
    """Choose the best front point under ``budget`` (on validation accuracy).

    Args:
        front: Front rows with ``trial``, ``accuracy`` (validation), ``size_bytes``,
            ``latency_ms`` (search-time), optionally ``final_latency_ms`` (used in its place
            where known), ``bops`` (needed by ``budget.max_bops``) and the test figures
            (``test_accuracy``, ``_low``, ``_high``: shown, never ranked on).
        budget: The limits.
        reference_accuracy: The teacher's validation accuracy (fraction).
    """
    t = front.copy().reset_index(drop=True)
    t["search_latency_ms"] = t["latency_ms"].astype(float)
    t["latency_ms"] = quoted_latency(t)
    final = t["final_latency_ms"] if "final_latency_ms" in t else t["latency_ms"] * float("nan")
    t["latency_basis"] = final.notna().map({True: "final", False: "search"})
    t["score"] = t["accuracy"].astype(float)
    t["drop_points"] = 100.0 * (reference_accuracy - t["score"])
    excess_cols = []
    relative = pd.Series(0.0, index=t.index)
    for lim, value in budget.items():
        col = lim.column
        excess = (t[col].astype(float) - value).clip(lower=0.0)
        # a tolerance for float noise, so a drop of exactly the budget meets it
        excess = excess.where(excess > 1e-9, 0.0)
        t[f"excess.{col}"] = excess
        excess_cols.append(f"excess.{col}")
        relative = relative + excess / lim.excess_scale(value)
    t["relative_excess"] = relative
    t["meets"] = (t[excess_cols] <= 0).all(axis=1) if excess_cols else True
    ties = ["size_bytes", "latency_ms", *(["bops"] if "bops" in t else [])]
    ok = t[t["meets"]].sort_values(
        ["score", *ties, "trial"], ascending=[False, *[True] * len(ties), True]
    )
    t["rank"] = pd.Series(range(1, len(ok) + 1), index=ok.index)
    chosen = int(ok.iloc[0]["trial"]) if len(ok) else None
    closest = None
    if chosen is None and len(t):
        near = t.sort_values(
            ["relative_excess", "score", "size_bytes"], ascending=[True, False, True]
        )
        closest = int(near.iloc[0]["trial"])
    relaxations: dict[str, tuple[float, int] | None] = {}
    if chosen is None:
        for lim, _ in budget.items():
            col = lim.column
            others = [f"excess.{o.column}" for o, _ in budget.items() if o is not lim]
            cand = t[(t[others] <= 0).all(axis=1)] if others else t
            if cand.empty:
                relaxations[lim.field] = None
            else:
                best = cand.sort_values([col, "score"], ascending=[True, False]).iloc[0]
                relaxations[lim.field] = (float(best[col]), int(best["trial"]))
    return Selection(t, budget, reference_accuracy, chosen, closest, relaxations)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _test_text(row: pd.Series) -> str:
    """``"; test 97.12% [96.10%, 98.00%] (reported, not ranked on)"``, or ``""``."""
    test = row.get("test_accuracy")
    if test is None or not pd.notna(test):
        return ""
    low, high = row.get("test_accuracy_low"), row.get("test_accuracy_high")
    interval = ""
    if low is not None and high is not None and pd.notna(low) and pd.notna(high):
        interval = f" [{_pct(low)}, {_pct(high)}]"
    return f"; test {_pct(test)}{interval} (reported, not ranked on)"


def _point(row: pd.Series, teacher_size: float | None) -> str:
    smaller = ""
    if teacher_size and row["size_bytes"] > 0:
        smaller = f", {teacher_size / row['size_bytes']:.1f}x smaller than the teacher"
    basis = "final, timed side by side" if row["latency_basis"] == "final" else "search-time"
    return (
        f"validation accuracy {_pct(row['score'])}{_test_text(row)}; size "
        f"{row['size_bytes']:,.0f} B{smaller}; latency {row['latency_ms']:.3f} ms ({basis}); "
        f"accuracy drop {row['drop_points']:.2f} points"
    )


def explain(selection: Selection, *, teacher_size: float | None = None) -> str:
    """Plain-text explanation of a selection, for the terminal and the model card."""
    s = selection
    t = s.table
    lines: list[str] = []
    ref = _pct(s.reference_accuracy)
    header = f"Budgets: {s.budget.describe()}; " + (
        f"ranked on validation accuracy; drops are measured from the teacher's validation "
        f"accuracy {ref}."
        if math.isfinite(s.reference_accuracy)
        else "ranked on validation accuracy; the study has no teacher baseline to measure "
        "drops from."
    )
    lines.append(header)
    if (t["latency_basis"] == "search").any():
        lines.append(
            "Note: no final side-by-side latency for some front points; their search-time "
            "latency is used (timed once, alone, while the search ran)."
        )
    if s.chosen is not None:
        row = s.row(s.chosen)
        ok = t[t["meets"]].sort_values("rank")
        desc = f" ({row['summary']})" if row.get("summary") else ""
        lines.append(f"Selected trial {s.chosen}{desc}:")
        lines.append(f"  {_point(row, teacher_size)}.")
        if row.get("techniques"):
            lines.append(f"  Techniques it combines: {row['techniques']}.")
        lines.append(
            f"Why: the highest validation accuracy among the {len(ok)} of {len(t)} "
            "front points that meet every budget."
        )
        ties = ok[(ok["score"] == row["score"]) & (ok["trial"] != s.chosen)]
        for _, tie in ties.iterrows():
            if tie["size_bytes"] > row["size_bytes"]:
                why = "is larger"
            elif tie["latency_ms"] > row["latency_ms"]:
                why = "is as small but slower"
            else:
                why = "is as small and as fast but a later trial"
            lines.append(
                f"  Tie: trial {int(tie['trial'])} has the same accuracy but {why} "
                f"({tie['size_bytes']:,.0f} B, {tie['latency_ms']:.3f} ms); ties go to the "
                "smaller model."
            )
        rest = ok[ok["score"] < row["score"]]
        if len(rest):
            r = rest.iloc[0]
            lines.append(
                f"  Runner-up: trial {int(r['trial'])}, {_pct(r['score'])}, "
                f"{r['size_bytes']:,.0f} B, {r['latency_ms']:.3f} ms."
            )
        out = len(t) - len(ok)
        if out:
            lines.append(f"  {out} front point(s) miss a budget{_miss_counts(s)}.")
        return "\n".join(lines)
    lines.append(f"No front point meets the budgets ({s.budget.describe()}).")
    if s.closest is not None:
        row = s.row(s.closest)
        lines.append(f"Closest: trial {s.closest}: {_point(row, teacher_size)}.")
        for lim, value in s.budget.items():
            excess = float(row[f"excess.{lim.column}"])
            if excess > 0:
                lines.append(
                    f"  misses {lim.flag} {lim.format(value)} by {lim.format(excess)} "
                    f"(+{100 * excess / max(value, 1e-12):.1f}%)"
                )
            else:
                lines.append(f"  meets {lim.flag} {lim.format(value)}")
    lines.append("Relaxing one budget alone:")
    for field, found in s.relaxations.items():
        lim = LIMIT_BY_FIELD[field]
        if found is None:
            lines.append(f"  {lim.flag}: no value helps while the other budgets hold.")
        else:
            value, trial = found
            lines.append(f"  {lim.flag} {lim.format(value)} would admit trial {trial}.")
    return "\n".join(lines)


def _miss_counts(s: Selection) -> str:
    parts = []
    for lim, _ in s.budget.items():
        n = int((s.table[f"excess.{lim.column}"] > 0).sum())
        if n:
            parts.append(f"{n} over {lim.label}")
    return f" ({', '.join(parts)})" if parts else ""
