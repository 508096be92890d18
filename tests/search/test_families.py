"""Technique families (``search.families``): which technique each trial uses, and the front
each family reaches alone beside the joint front, on trials whose fronts are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from search.families import (
    FAMILIES,
    absent_families,
    family_fronts,
    family_members,
    technique_of,
    techniques_text,
)
from search.quality import front_hypervolume
from search.results import front_mask
from spaces import CompressionConfig

LAYERS = ("conv1", "fc1", "fc2")


def _row(
    trial: int,
    accuracy: float,
    size: float,
    latency: float,
    *,
    student: str = "teacher",
    bits: dict[str, float] | None = None,
    prune: dict[str, float] | None = None,
    channels: float = 0.0,
    feasible: bool = True,
    baseline: str = "",
    state: str = "COMPLETE",
) -> dict[str, object]:
    row: dict[str, object] = {
        "trial": trial,
        "state": state,
        "feasible": feasible,
        "baseline": baseline,
        "accuracy": accuracy,
        "size_bytes": size,
        "latency_ms": latency,
        "final_latency_ms": math.nan,
        "student": student,
    }
    row |= {f"bits.{n}": (bits or {}).get(n, 32) for n in LAYERS}
    row |= {f"prune.{n}": (prune or {}).get(n, 0.0) for n in LAYERS}
    row["channels.conv1"] = channels
    return row


def _frame(rows: list[dict[str, object]], objectives: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["front"] = front_mask(df, objectives)
    return df


def test_technique_of_reads_bits_pruning_channels_and_the_student() -> None:
    teacher = _row(0, 0.95, 1000, 1.0, baseline="teacher")
    assert technique_of(teacher) == frozenset()
    assert techniques_text(teacher) == "none (the teacher)"
    # a float16 layer counts as quantization (documented)
    assert technique_of(_row(1, 0.9, 1, 1, bits={"fc1": 16})) == {"quantization"}
    assert technique_of(_row(2, 0.9, 1, 1, prune={"fc2": 0.05})) == {"pruning"}
    assert technique_of(_row(3, 0.9, 1, 1, channels=0.25)) == {"pruning"}
    assert technique_of(_row(4, 0.9, 1, 1, student="w0.5")) == {"student"}
    both = _row(5, 0.9, 1, 1, student="w0.5", bits={"conv1": 4}, prune={"fc1": 0.5})
    assert techniques_text(both) == "quantization + pruning + student"
    # a stored configuration (what the trial built) is read in place of the columns
    config = CompressionConfig(student="w0.5", channels={"conv1": 0.25}).to_json()
    assert technique_of({"config": config, "bits.fc1": 4}) == {"pruning", "student"}
    # a missing or NaN parameter is the default (float, unpruned)
    assert technique_of({"student": math.nan, "bits.fc1": math.nan, "prune.fc1": None}) == set()


def test_only_the_layers_the_trials_model_has_count() -> None:
    # a student without fc2: the bits the sampler drew for fc2 were never applied
    row = _row(1, 0.9, 1, 1, student="w0.5-f1", bits={"fc2": 4}, prune={"fc2": 0.5})
    layers = {"teacher": list(LAYERS), "w0.5-f1": ["conv1", "fc1"]}
    assert technique_of(row, layers) == {"student"}
    assert techniques_text(row, layers) == "student"
    # without the layers (or for a model not listed) every column counts
    assert technique_of(row) == {"quantization", "pruning", "student"}
    assert technique_of(row, {"teacher": list(LAYERS)}) == {"quantization", "pruning", "student"}


#: accuracy, size (B), search latency (ms); the fronts over (accuracy, size) are known:
#: quantization alone {q1, q2}, pruning alone {teacher, p1}, student alone {teacher, s1},
#: joint {q1, j1} (j1 dominates p1, s1 and q2; j2 is smaller still but over budget).
KNOWN = [
    _row(0, 0.95, 1000, 1.0, baseline="teacher"),
    _row(1, 0.95, 300, 0.8, bits={"fc1": 4}),  # q1
    _row(2, 0.90, 150, 0.5, bits={"fc1": 2, "conv1": 2}),  # q2
    _row(3, 0.94, 500, 0.9, prune={"fc1": 0.5}),  # p1
    _row(4, 0.93, 400, 0.4, student="w0.5"),  # s1
    _row(5, 0.945, 100, 0.3, student="w0.5", bits={"fc1": 4}, prune={"fc2": 0.3}),  # j1
    _row(6, 0.95, 50, 0.2, bits={"fc1": 2}, prune={"fc1": 0.9}, feasible=False),  # j2
    _row(7, math.nan, math.nan, math.nan, bits={"fc1": 3}, state="FAIL"),
]
KNOWN[1]["final_latency_ms"] = 0.7  # the quoted figure: final where present


def test_family_fronts_of_a_study_with_known_fronts() -> None:
    objectives = ("accuracy", "size_bytes")
    trials = _frame(KNOWN, objectives)
    members = family_members(trials, objectives)
    assert list(members) == list(FAMILIES)
    fronts = {name: sorted(rows.loc[rows["front"], "trial"]) for name, rows in members.items()}
    assert fronts == {
        "quantization only": [1, 2],
        "pruning only": [0, 3],
        "student only": [0, 4],
        "joint": [1, 5],
    }
    table = family_fronts(trials, objectives).set_index("family")
    # hypervolume over accuracy / 0.95 above 0.9 and size / 1000 below 1.0
    assert table.loc["quantization only", "hypervolume"] == pytest.approx(
        0.1 * 0.7 + (0.90 / 0.95 - 0.9) * 0.15
    )
    assert table.loc["pruning only", "hypervolume"] == pytest.approx((0.94 / 0.95 - 0.9) * 0.5)
    assert table.loc["student only", "hypervolume"] == pytest.approx((0.93 / 0.95 - 0.9) * 0.6)
    assert table.loc["joint", "hypervolume"] == pytest.approx(
        (0.945 / 0.95 - 0.9) * 0.2 + 0.1 * 0.7
    )
    assert table.loc["joint", "hypervolume"] == pytest.approx(front_hypervolume(trials, objectives))
    # own complete trials (the failed one is not counted), feasible ones, front points
    assert table["trials"].to_dict() == {
        "quantization only": 2,
        "pruning only": 1,
        "student only": 1,
        "joint": 7,
    }
    assert table.loc["joint", "feasible"] == 6 and table.loc["joint", "front"] == 2
    # within 1 point of the teacher (no drop budget): 94%; q2 (90%) is below it
    assert table["accuracy_floor"].tolist() == pytest.approx([0.94] * 4)
    assert table.loc["quantization only", "best_size_bytes"] == 300
    assert table.loc["quantization only", "best_size_trial"] == 1
    assert table.loc["quantization only", "best_latency_ms"] == pytest.approx(0.7)  # final
    assert table.loc["student only", "best_size_bytes"] == 1000  # s1 is below the floor
    assert table.loc["joint", "best_size_trial"] == 5  # j2 is smaller, but over budget
    assert table.loc["joint", "best_latency_ms"] == pytest.approx(0.3)
    # a drop budget moves the floor: within 2 points, s1 (93%) counts
    wide = family_fronts(trials, objectives, max_accuracy_drop=2.0).set_index("family")
    assert wide.loc["student only", "best_size_bytes"] == 400
    assert wide.loc["student only", "best_latency_trial"] == 4


def test_a_quantization_only_study_has_only_that_family_and_joint() -> None:
    rows = [r for r in KNOWN if r["trial"] in (0, 1, 2)]
    trials = _frame(rows, ("accuracy", "size_bytes", "latency_ms"))
    table = family_fronts(trials)
    assert table["family"].tolist() == ["quantization only", "joint"]
    assert absent_families(table) == ["pruning only", "student only"]
    # the same trials: the same front and hypervolume
    assert table["hypervolume"].iloc[0] == pytest.approx(table["hypervolume"].iloc[1])
    # a family whose only trial failed is absent too
    failed = _frame([*rows, KNOWN[7] | {"bits.fc1": 32, "prune.fc1": 0.5}], ("accuracy",))
    assert family_fronts(failed, ("accuracy",))["family"].tolist() == [
        "quantization only",
        "joint",
    ]


def _default_like(seed: int = 0, n: int = 80) -> pd.DataFrame:
    """Trials like the default study's: the baselines, then random joint configurations with
    figures from a smooth made-up model (fewer bits and more pruning: smaller, less accurate)."""
    rng = np.random.default_rng(seed)
    rows = [
        _row(0, 0.97, 10_000, 1.0, baseline="teacher"),
        _row(1, 0.968, 2_700, 0.9, bits=dict.fromkeys(LAYERS, 8), baseline="uniform-int8"),
        _row(2, 0.95, 1_500, 0.9, bits=dict.fromkeys(LAYERS, 4), baseline="uniform-int4"),
        _row(3, 0.955, 2_600, 0.5, student="w0.5", baseline="student:w0.5"),
        _row(4, 0.94, 5_000, 0.7, student="w1.0-f1", baseline="student:w1.0-f1"),
        # random joint trials are hardly ever pruning alone: two such (as warm starts give)
        _row(5, 0.96, 6_000, 0.95, prune=dict.fromkeys(LAYERS, 0.5)),
        _row(6, 0.965, 8_000, 0.98, prune={"fc1": 0.6}),
    ]
    students = {"teacher": 1.0, "w0.5": 0.26, "w1.0-f1": 0.5}
    for number in range(7, 7 + n):
        student = str(rng.choice(list(students)))
        bits = {n_: float(rng.choice([2, 3, 4, 8, 32])) for n_ in LAYERS}
        prune = {n_: float(rng.choice([0.0, 0.0, 0.3, 0.6, 0.9])) for n_ in LAYERS}
        pairs = [(bits[n_], prune[n_]) for n_ in LAYERS]
        share = np.mean([b / 32 * (1 - p) for b, p in pairs])
        size = 10_000 * students[student] * share + 200
        loss = sum(0.02 * (b < 4) + 0.01 * (p > 0.5) for b, p in pairs)
        accuracy = 0.97 - loss - 0.02 * (student != "teacher") + rng.normal(0, 0.003)
        latency = 0.3 + 0.7 * students[student] + rng.normal(0, 0.02)
        feasible = accuracy >= 0.92
        rows.append(
            _row(number, accuracy, size, latency, student=student, bits=bits, prune=prune,
                 feasible=feasible)
        )  # fmt: skip
    return _frame(rows, ("accuracy", "size_bytes", "latency_ms"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_joint_front_reaches_at_least_every_familys_hypervolume(seed: int) -> None:
    trials = _default_like(seed)
    table = family_fronts(trials, max_accuracy_drop=3.0).set_index("family")
    assert list(table.index) == list(FAMILIES)  # every family has trials of its own
    joint = table.loc["joint", "hypervolume"]
    assert joint == pytest.approx(front_hypervolume(trials))  # the study's own front
    assert (table["hypervolume"] > 0).all()
    assert (joint >= table["hypervolume"] - 1e-12).all()
    assert (table.loc["joint", "best_size_bytes"] <= table["best_size_bytes"]).all()
