"""What a compression search works on: a trained model, its data and how to score it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

TaskKind = Literal["classification", "embedding", "logits", "causal-lm"]
#: Every :data:`TaskKind`, in the order error messages list them.
TASK_KINDS: tuple[str, ...] = ("classification", "embedding", "logits", "causal-lm")


@dataclass(frozen=True)
class Split:
    """One data split: model inputs (one tensor per positional argument) and targets.

    ``inputs`` is a tuple so that models taking several tensors (token ids and an attention
    mask, say) fit the same contract as a CNN taking one image batch.
    """

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("A Split needs at least one input tensor.")
        n = len(self.targets)
        for i, t in enumerate(self.inputs):
            if len(t) != n:
                raise ValueError(
                    f"Split input {i} has {len(t)} rows but the targets have {n}; they must match."
                )

    def __len__(self) -> int:
        return len(self.targets)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
        """Yield ``(inputs, targets)`` mini-batches."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield tuple(t[idx] for t in self.inputs), self.targets[idx]

    def head(self, n: int) -> Split:
        """The first ``n`` rows (or all of them when there are fewer)."""
        return Split(tuple(t[:n] for t in self.inputs), self.targets[:n])


@dataclass(frozen=True)
class Metric:
    """How a model's outputs are scored against a split's targets.

    ``fn(outputs, targets)`` returns a score, usually in [0, 1], where higher is better
    (accuracy, cosine similarity; a causal language model's perplexity ratio to the teacher,
    :mod:`spaces.causal_lm`, is 1.0 for the teacher and may exceed it). Accuracy drops and
    budgets are expressed in points (1 point = 0.01).
    ``per_row(outputs, targets)``, when given, returns one score per row whose mean is the
    metric; the test-split bootstrap resamples those instead of calling ``fn`` again.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], float]
    per_row: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float(self.fn(outputs, targets))


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 where the top class is the label; with float targets of the outputs' shape (a
    ``"logits"`` task's reference logits), where it is the reference's top class."""
    if targets.is_floating_point() and targets.shape == outputs.shape:
        targets = targets.argmax(dim=-1)
    return (outputs.argmax(dim=-1) == targets).float()


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(_correct(outputs, targets).mean())


ACCURACY = Metric("accuracy", _accuracy, per_row=_correct)


StudentFactory = Callable[[], nn.Module]


@dataclass
class Task:
    """A trained model, its data splits and the way to score it.

    Attributes:
        name: Short identifier, used in cache keys and reports.
        model: The trained teacher. frontier never changes it; candidates are built from copies.
        train: Training split: distillation, fine-tuning and calibration use it only.
        val: Validation split: the search scores candidates on it.
        test: Test split: the front is re-measured on it for the report.
        example_input: A batch of one, used for export and for counting operations.
        kind: ``"classification"`` (targets are class labels: cross-entropy, logits
            distillation), ``"embedding"`` (outputs are vectors; distillation and fine-tuning
            match the teacher's outputs) or ``"logits"`` (targets are a reference model's
            logits, usually the teacher's own, and there are no labels: distillation and
            fine-tuning minimise the KL divergence to the targets' softened distribution;
            the default metric, accuracy, is then top-1 agreement with the targets) or
            ``"causal-lm"`` (a language model: inputs and targets are the same token ids,
            rows x seq, outputs are rows x seq x vocab logits; training minimises the
            shifted next-token cross-entropy, distillation adds the per-token KL divergence
            to the teacher's logits, computed one batch at a time; see
            :mod:`spaces.causal_lm`).
        metric: Scores outputs against targets; higher is better.
        students: Named constructors of untrained student architectures. Every layer name of a
            student must be a layer name of the teacher (a student is a narrower or shallower
            teacher), so that per-layer settings keep their meaning across students.
        batch_size: Batch size for training and evaluation loops.
        extra_metrics: More figures reported beside ``metric`` (never searched on), by
            result-column name, e.g. nearest-neighbour agreement of an embedding model.
    """

    name: str
    model: nn.Module
    train: Split
    val: Split
    test: Split
    example_input: tuple[torch.Tensor, ...]
    kind: TaskKind = "classification"
    metric: Metric = ACCURACY
    students: Mapping[str, StudentFactory] = field(default_factory=dict)
    batch_size: int = 64
    extra_metrics: Mapping[str, Metric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ValueError(
                f"Task {self.name!r}: 'model' must be a torch.nn.Module, got "
                f"{type(self.model).__name__}."
            )
        for split_name in ("train", "val", "test"):
            if not isinstance(getattr(self, split_name), Split):
                raise ValueError(f"Task {self.name!r}: {split_name!r} must be a frontier Split.")
        if self.kind not in TASK_KINDS:
            raise ValueError(
                f"Task {self.name!r}: 'kind' must be one of {list(TASK_KINDS)}, got {self.kind!r}."
            )
        if self.kind == "logits":
            for split_name in ("train", "val", "test"):
                targets = getattr(self, split_name).targets
                if not targets.is_floating_point() or targets.dim() != 2:
                    raise ValueError(
                        f"Task {self.name!r}: a 'logits' task's targets are reference logits "
                        f"(float, rows x classes); {split_name!r} has {targets.dtype} of "
                        f"shape {tuple(targets.shape)}."
                    )
        if self.kind == "causal-lm":
            for split_name in ("train", "val", "test"):
                targets = getattr(self, split_name).targets
                if targets.is_floating_point() or targets.dim() != 2 or targets.shape[1] < 2:
                    raise ValueError(
                        f"Task {self.name!r}: a 'causal-lm' task's targets are token ids "
                        f"(integers, rows x seq, seq >= 2); {split_name!r} has {targets.dtype} "
                        f"of shape {tuple(targets.shape)}."
                    )
        if "teacher" in self.students:
            raise ValueError(f"Task {self.name!r}: 'teacher' is reserved; rename that student.")
        self.model.eval()
