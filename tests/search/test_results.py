"""The trials table lists every searched configuration field (``search.results``)."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution

from search.objective import describe
from search.results import trials_frame
from spaces import CompressionConfig


def test_rounding_is_a_configuration_column_beside_granularity() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    dists = {
        "student": CategoricalDistribution(["teacher"]),
        "bits.fc1": CategoricalDistribution([3, 8]),
        "granularity": CategoricalDistribution(["channel", "g32"]),
        "rounding": CategoricalDistribution(["nearest", "gptq"]),
    }
    params = {"student": "teacher", "bits.fc1": 3, "granularity": "g32", "rounding": "gptq"}
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=dists, values=[0.9, 1e3, 1.0])
    )
    frame = trials_frame(study)
    columns = list(frame.columns)
    assert frame["rounding"].tolist() == ["gptq"]
    # the configuration's columns sit together, after the student
    config = columns[columns.index("student") : columns.index("student") + 4]
    assert config == ["student", "bits.fc1", "granularity", "rounding"]


def test_a_candidate_summary_names_gptq_rounding_of_integer_layers() -> None:
    assert describe(CompressionConfig(bits={"a": 3}, rounding="gptq")).endswith("GPTQ rounding")
    assert "GPTQ" not in describe(CompressionConfig(bits={"a": 16}, rounding="gptq"))
    assert "rounding" not in describe(CompressionConfig(bits={"a": 3}))
