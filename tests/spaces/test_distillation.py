from __future__ import annotations

import pytest
import torch

import spaces.distillation as distillation
from evaluators import AccuracyEvaluator, Task, WeightCache
from spaces import CompressionConfig, DistillationSettings, FinetuneSettings, StudentPool, compress


def test_student_is_distilled_once_however_many_trials_use_it(
    digits_task: Task, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_distill = StudentPool._distill

    def counting(self: StudentPool, name: str) -> dict[str, torch.Tensor]:
        calls.append(name)
        return real_distill(self, name)

    monkeypatch.setattr(StudentPool, "_distill", counting)
    settings = DistillationSettings(epochs=2)
    pool = StudentPool(digits_task, WeightCache(tmp_path), settings, seed=0)
    for i in range(4):
        for student in ("w0.5", "w0.25"):
            config = CompressionConfig(student=student, bits={"fc1": 4}, prune={"fc1": 0.1 * i})
            compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=i)
    assert sorted(calls) == ["w0.25", "w0.5"]

    # a new process (a new pool on the same cache) loads the students instead of training
    again = StudentPool(digits_task, WeightCache(tmp_path), settings, seed=0)
    w = again.get("w0.5").state_dict()["fc1.weight"]
    assert torch.equal(w, pool.get("w0.5").state_dict()["fc1.weight"])
    assert sorted(calls) == ["w0.25", "w0.5"]
    # other settings or another seed are another student
    StudentPool(digits_task, WeightCache(tmp_path), settings, seed=1).get("w0.5")
    assert sorted(calls) == ["w0.25", "w0.5", "w0.5"]


def test_distillation_recovers_accuracy(digits_task: Task, tmp_path) -> None:
    pool = StudentPool(digits_task, WeightCache(tmp_path), DistillationSettings(epochs=30), seed=0)
    acc = AccuracyEvaluator(digits_task, split="val")
    student = acc.evaluate(type("C", (), {"model": pool.get("w0.5"), "artifact": b""})())
    teacher = acc.evaluate(type("C", (), {"model": digits_task.model, "artifact": b""})())
    assert student["accuracy"] >= teacher["accuracy"] - 0.03


def test_unknown_student_names_the_choices(pool: StudentPool) -> None:
    with pytest.raises(ValueError, match=r"Unknown student 'w9'.*'w0.5'"):
        pool.get("w9")


def test_settings_validate_at_construction() -> None:
    with pytest.raises(ValueError, match=r"distillation\.alpha"):
        DistillationSettings(alpha=1.5)
    assert DistillationSettings().fingerprint() != DistillationSettings(epochs=3).fingerprint()
    assert distillation.DistillationSettings is DistillationSettings


def test_students_of_another_teacher_are_not_reused(digits_task: Task, tmp_path) -> None:
    import copy
    import dataclasses

    settings = DistillationSettings(epochs=1)
    first = StudentPool(digits_task, WeightCache(tmp_path), settings, seed=0)
    first.get("w0.25")
    other_teacher = copy.deepcopy(digits_task.model)
    with torch.no_grad():
        other_teacher.fc2.bias.add_(1.0)
    other = dataclasses.replace(digits_task, model=other_teacher)
    cache = WeightCache(tmp_path)
    StudentPool(other, cache, settings, seed=0).get("w0.25")
    assert len(cache.created) == 1  # distilled again, from the new teacher
