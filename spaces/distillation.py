"""Knowledge distillation: students trained from the teacher's outputs, once per seed."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spaces.cache import WeightCache
from spaces.causal_lm import next_token_loss, token_kl
from spaces.config import TEACHER
from spaces.devices import to_device
from spaces.layers import compressible_layers
from spaces.task import Split, Task
from spaces.training import LossFn, fit, predict


@dataclass(frozen=True)
class DistillationSettings:
    """How students are trained from the teacher.

    Attributes:
        temperature: Softens both sides' logits before their KL divergence is taken.
        alpha: Weight of the distillation term; ``1 - alpha`` goes to the label loss
            (classification tasks only: embedding and logits tasks have no labels).
        epochs: Epochs of student training.
        lr: Adam learning rate.
    """

    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 40
    lr: float = 3e-3

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(
                f"'distillation.temperature' must be > 0. Got {self.temperature} instead."
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(
                f"'distillation.alpha' must be in the range [0, 1]. Got {self.alpha} instead."
            )
        if self.epochs < 0:
            raise ValueError(f"'distillation.epochs' must be >= 0. Got {self.epochs} instead.")
        if not self.lr > 0:
            raise ValueError(f"'distillation.lr' must be > 0. Got {self.lr} instead.")

    def fingerprint(self) -> str:
        """Short hash of the settings: cached students are keyed by it."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


class TeacherLogits:
    """The teacher's outputs on a split's rows, computed when a batch asks for them.

    A causal language model's outputs are rows x seq x vocab: for a training split they
    would not fit in memory all at once (GPT-2's 50,257-token vocabulary makes 25 MB per
    128-token row). Indexed like the tensor of all outputs, ``logits[idx]``, it runs the
    teacher on those rows only, without gradients, on ``device`` (a copy of the teacher is
    made there once when it is not where the teacher is).
    """

    def __init__(self, model: nn.Module, split: Split, device: torch.device | None) -> None:
        self.model = model
        self.split = split
        self.device = device
        self._on_device: nn.Module | None = None

    def _teacher(self) -> nn.Module:
        if self._on_device is None:
            here = next(self.model.parameters()).device
            moved = self.device is not None and torch.device(self.device) != here
            self._on_device = copy.deepcopy(self.model).to(self.device) if moved else self.model
            self._on_device.eval()
        return self._on_device

    @torch.no_grad()  # not inference_mode: the loss saves these logits for its backward pass
    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        teacher = self._teacher()
        device = next(teacher.parameters()).device
        return teacher(*to_device(tuple(t[idx] for t in self.split.inputs), device))


def kd_loss(
    task: Task,
    teacher_outputs: torch.Tensor | TeacherLogits,
    temperature: float,
    alpha: float,
) -> LossFn:
    """The distillation loss for ``task``, looking up the teacher's outputs by row index.

    Classification: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE``.
    Embedding tasks have no labels to mix in: the loss is the mean squared error to the
    teacher's output vectors plus ``1 - cosine`` similarity. Logits tasks have none either:
    their targets are reference logits, and the loss is ``T^2 * KL`` to those targets alone
    (``alpha`` is unused; ``teacher_outputs`` are the same logits when the reference is the
    teacher, as in a task that distils a pretrained model into itself).
    """
    if task.kind == "embedding":

        def embed_loss(out: torch.Tensor, _: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            ref = teacher_outputs[idx].to(out.device)  # kept on the CPU, rows looked up
            cos = F.cosine_similarity(out, ref, dim=-1).mean()
            return F.mse_loss(out, ref) + (1.0 - cos)

        return embed_loss

    t = temperature
    if task.kind == "logits":

        def logits_loss(out: torch.Tensor, target: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return t * t * _soft_kl(out, target, t)

        return logits_loss

    if task.kind == "causal-lm":

        def lm_loss(out: torch.Tensor, ids: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            soft = token_kl(out, teacher_outputs[idx].to(out.device), t)
            return alpha * t * t * soft + (1.0 - alpha) * next_token_loss(out, ids)

        return lm_loss

    def loss(out: torch.Tensor, target: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        soft = _soft_kl(out, teacher_outputs[idx].to(out.device), t)
        return alpha * t * t * soft + (1.0 - alpha) * F.cross_entropy(out, target)

    return loss


def _soft_kl(out: torch.Tensor, reference: torch.Tensor, t: float) -> torch.Tensor:
    """``KL(softmax(reference / t) || softmax(out / t))``, averaged over rows."""
    return F.kl_div(
        F.log_softmax(out / t, dim=-1),
        F.log_softmax(reference / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


class StudentPool:
    """The teacher and its distilled students, each trained once per seed and reused.

    Students are stored in the study's weight cache (keyed by task, student, seed and the
    distillation settings), so every trial, every process and every later run that picks a
    student loads the same weights instead of training them again.

    ``device`` is where distillation, the teacher's outputs and the candidates' GPTQ
    calibration and recovery fine-tuning run (:mod:`spaces.devices`); the models it holds,
    the teacher's outputs and the cached state dicts stay on the CPU, and cache keys do not
    name the device. ``None``: where the teacher is.
    """

    def __init__(
        self,
        task: Task,
        cache: WeightCache,
        settings: DistillationSettings,
        *,
        seed: int,
        device: torch.device | None = None,
    ) -> None:
        self.task = task
        self.cache = cache
        self.settings = settings
        self.seed = seed
        self.device = device
        self._models: dict[str, nn.Module] = {TEACHER: task.model}
        #: Students are keyed by their teacher's weights too: a retrained teacher (new recipe,
        #: new data) never reuses students distilled from the old one.
        self.teacher_fingerprint = weights_fingerprint(task.model)
        self._teacher_train_outputs: torch.Tensor | None = None
        self._teacher_logits: TeacherLogits | None = None

    @property
    def names(self) -> list[str]:
        return [TEACHER, *self.task.students]

    def teacher_train_outputs(self) -> torch.Tensor | TeacherLogits:
        """The teacher's outputs on the training split, computed once (a causal language
        model's: computed per batch when asked, see :class:`TeacherLogits`)."""
        if self.task.kind == "causal-lm":
            if self._teacher_logits is None:
                self._teacher_logits = TeacherLogits(self.task.model, self.task.train, self.device)
            return self._teacher_logits
        if self._teacher_train_outputs is None:
            self._teacher_train_outputs = predict(
                self.task.model, self.task.train, device=self.device
            )
        return self._teacher_train_outputs

    def get(self, name: str) -> nn.Module:
        """The trained model called ``name`` (shared: callers copy it before changing it)."""
        if name not in self._models:
            if name not in self.task.students:
                raise ValueError(
                    f"Unknown student {name!r} for task {self.task.name!r}; "
                    f"choose from {self.names}."
                )
            build = self.task.students[name]
            key = (
                f"{self.task.name}-student-{name}-{self.settings.fingerprint()}"
                f"-t{self.teacher_fingerprint}-seed{self.seed}"
            )
            model = build()
            model.load_state_dict(self.cache.get_or_create(key, lambda: self._distill(name)))
            self._models[name] = model.eval()
        return self._models[name]

    def _distill(self, name: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(self.seed)
        student = self.task.students[name]()
        check_student_layers(self.task, name, student)
        s = self.settings
        fit(
            student,
            self.task.train,
            kd_loss(self.task, self.teacher_train_outputs(), s.temperature, s.alpha),
            epochs=s.epochs,
            lr=s.lr,
            batch_size=self.task.batch_size,
            seed=self.seed,
            device=self.device,
        )
        return student.state_dict()  # fit leaves the student where it was made: the CPU


def weights_fingerprint(model: nn.Module) -> str:
    """Short hash of a model's state dict (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


def check_student_layers(task: Task, name: str, student: nn.Module) -> None:
    """A student's compressible layers must carry teacher layer names."""
    teacher_layers = set(compressible_layers(task.model))
    extra = sorted(set(compressible_layers(student)) - teacher_layers)
    if extra:
        raise ValueError(
            f"Student {name!r} of task {task.name!r} has layers the teacher lacks: {extra}. "
            "Name a student's layers after the teacher's so per-layer settings apply to both."
        )
