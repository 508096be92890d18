"""Multi-objective early stopping: recovery fine-tuning epochs are the fidelity.

Optuna's pruners refuse multi-objective studies and Ray's schedulers follow one metric, so
frontier stops candidates itself. A *rung* is a number of fine-tuning epochs done (0 is the
candidate just compressed, before any fine-tuning). At each rung a candidate is scored on the
validation split; it stops when at least ``min_dominating`` finished trials, scored at the same
rung, were *clearly* better in every objective of the study (``[study] objectives``):

- accuracy at that rung at least ``margin`` points higher,
- packed size no larger,
- latency no more than 5% higher (the spread of repeated latency measurements),
- BOPs no larger.

An objective the study does not optimise is not compared.

Size and latency do not change while fine-tuning (the bit widths, masks and architecture are
fixed), so they are measured once, on the rung-0 candidate; its latency is the trial's latency
(it is not measured again after fine-tuning), so rung 0 costs one compression without
fine-tuning and one accuracy pass. A stopped candidate is recorded as a
pruned trial with its figures at the rung where it stopped (``stopped_epoch``, ``prune_reason``).

Which trials a candidate is compared with is a snapshot taken when its trial starts (the
*rung table*), so that a Ray worker needs no access to the storage and a decision can be
replayed. This module decides; :mod:`search.staged` evaluates a candidate rung by rung.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from search.objective_names import DEFAULT_OBJECTIVES
from spaces.compress import FinetuneSettings

#: Latency within this fraction of another trial's counts as "no slower" (measurement noise).
LATENCY_TOLERANCE = 0.05


def rung_key(epoch: int) -> str:
    """The figure (user attribute) holding the validation accuracy after ``epoch`` epochs."""
    return f"accuracy@{epoch}"


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """The ``[early_stopping]`` section.

    Attributes:
        enabled: Stop clearly dominated candidates early.
        min_dominating: Finished trials that must dominate a candidate at a rung to stop it.
        rungs: Fine-tuning epochs after which candidates are compared (0 is before any
            fine-tuning); ``None`` means every epoch before the last.
        startup_trials: No candidate is stopped before this many trials have finished with
            figures at the rung.
        margin: Accuracy points by which a dominating trial must be better.
    """

    enabled: bool = True
    min_dominating: int = 2
    rungs: tuple[int, ...] | None = None
    startup_trials: int = 10
    margin: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(
                f"'early_stopping.enabled' must be true or false. Got {self.enabled!r} instead."
            )
        for name in ("min_dominating", "startup_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"'early_stopping.{name}' must be an int >= 1. Got {value!r} instead."
                )
        if self.rungs is not None:
            rungs = tuple(self.rungs)
            if any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in rungs):
                raise ValueError(
                    f"'early_stopping.rungs' must be a list of epochs >= 0. Got {list(rungs)} "
                    "instead."
                )
            object.__setattr__(self, "rungs", tuple(sorted(set(rungs))))
        if (
            isinstance(self.margin, bool)
            or not isinstance(self.margin, (int, float))
            or not math.isfinite(self.margin)
            or self.margin < 0
        ):
            raise ValueError(
                f"'early_stopping.margin' must be a number of points >= 0. Got {self.margin!r} "
                "instead."
            )

    def rungs_for(self, epochs: int) -> tuple[int, ...]:
        """The rungs that apply to ``epochs`` fine-tuning epochs (each is < ``epochs``)."""
        rungs = self.rungs if self.rungs is not None else tuple(range(epochs))
        return tuple(r for r in rungs if r < epochs)


@dataclass(frozen=True)
class RungPoint:
    """A finished trial as seen at the rungs: accuracy per rung, size, latency and BOPs
    (NaN when the trial did not record it)."""

    number: int
    accuracy: Mapping[int, float]
    size_bytes: float
    latency_ms: float
    bops: float = math.nan

    def to_json(self) -> list[Any]:
        return [
            self.number,
            {str(k): v for k, v in self.accuracy.items()},
            self.size_bytes,
            self.latency_ms,
            self.bops,
        ]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> RungPoint:
        number, acc, size, latency, *rest = data
        bops = float(rest[0]) if rest else math.nan
        return cls(int(number), {int(k): float(v) for k, v in acc.items()}, size, latency, bops)


def rung_table(trials: Iterable[FrozenTrial]) -> list[RungPoint]:
    """Finished (complete or pruned) trials that carry figures at one or more rungs."""
    table = []
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        attrs = t.user_attrs
        acc = {
            int(k.split("@", 1)[1]): float(v)
            for k, v in attrs.items()
            if k.startswith("accuracy@") and isinstance(v, (int, float))
        }
        size, latency = attrs.get("size_bytes"), attrs.get("latency_ms")
        bops = attrs.get("bops")
        bops = float(bops) if isinstance(bops, (int, float)) else math.nan
        if acc and isinstance(size, (int, float)) and isinstance(latency, (int, float)):
            table.append(RungPoint(t.number, acc, float(size), float(latency), bops))
    return table


class CandidateStopped(Exception):
    """A candidate stopped early: ``figures`` are its measurements at the rung it reached."""

    def __init__(self, epoch: int, figures: dict[str, float], dominators: Sequence[int]) -> None:
        self.epoch = epoch
        self.figures = figures
        self.dominators = list(dominators)
        shown = ", ".join(str(n) for n in self.dominators[:8])
        more = "" if len(self.dominators) <= 8 else f" and {len(self.dominators) - 8} more"
        self.reason = f"dominated after {epoch} fine-tuning epoch(s) by trial(s) {shown}{more}"
        super().__init__(self.reason)


@dataclass
class RungJudge:
    """Decides, at each rung, whether a candidate goes on (see the module docstring)."""

    settings: EarlyStoppingSettings
    epochs: int
    table: Sequence[RungPoint] = field(default_factory=list)
    #: The study's objectives: only these are compared.
    objectives: Sequence[str] = DEFAULT_OBJECTIVES

    @property
    def rungs(self) -> tuple[int, ...]:
        return self.settings.rungs_for(self.epochs)

    def dominators(self, epoch: int, figures: Mapping[str, float]) -> list[int]:
        """Numbers of the table's trials that clearly dominate ``figures`` at ``epoch``."""
        at_rung = [p for p in self.table if epoch in p.accuracy]
        if len(at_rung) < self.settings.startup_trials:
            return []
        margin = self.settings.margin / 100.0
        return [
            p.number
            for p in at_rung
            if p.accuracy[epoch] >= figures["accuracy"] + margin and self._no_worse_cost(p, figures)
        ]

    def _no_worse_cost(self, p: RungPoint, figures: Mapping[str, float]) -> bool:
        names = self.objectives
        return (
            ("size_bytes" not in names or p.size_bytes <= figures["size_bytes"])
            and (
                "latency_ms" not in names
                or p.latency_ms <= figures["latency_ms"] * (1 + LATENCY_TOLERANCE)
            )
            and ("bops" not in names or p.bops <= figures["bops"])
        )

    def check(self, epoch: int, figures: dict[str, float]) -> None:
        """Raise :class:`CandidateStopped` when ``figures`` are clearly dominated at ``epoch``."""
        if epoch not in self.rungs:
            return
        dominators = self.dominators(epoch, figures)
        if len(dominators) >= self.settings.min_dominating:
            raise CandidateStopped(epoch, figures, dominators)

    def to_json(self) -> list[Any]:
        return [p.to_json() for p in self.table]


def judge_for(
    settings: EarlyStoppingSettings,
    finetune: FinetuneSettings,
    trials: Iterable[FrozenTrial],
    *,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
) -> RungJudge | None:
    """A judge over the study's finished trials comparing ``objectives`` (the study's), or
    ``None`` when early stopping is off."""
    if not settings.enabled or not settings.rungs_for(finetune.epochs):
        return None
    return RungJudge(settings, finetune.epochs, rung_table(trials), tuple(objectives))
