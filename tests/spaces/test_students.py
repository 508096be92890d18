from __future__ import annotations

import pytest
import torch

from evaluators import Task, WeightCache
from evaluators.tasks.digits import digits_mlp
from spaces import CompressionConfig, FinetuneSettings, StudentPool, compress, compressible_layers
from spaces.distillation import check_student_layers
from spaces.students import add_custom_students


def _layers(model: torch.nn.Module) -> list[str]:
    return list(compressible_layers(model))


def test_builtin_students_vary_depth_and_width_with_teacher_layer_names(
    digits_task: Task, cache_dir
) -> None:
    mlp = digits_mlp(cache=WeightCache(cache_dir), seed=0)
    assert _layers(mlp.model) == ["fc1", "fc2", "fc3"]
    assert [m.out_features for m in compressible_layers(mlp.model).values()] == [300, 100, 10]
    for task in (digits_task, mlp):
        depths = set()
        for name, build in task.students.items():
            student = build()
            check_student_layers(task, name, student)  # raises on a foreign layer name
            depths.add(len(_layers(student)))
        assert len(depths) >= 2, f"{task.name}: every student has the same depth"
    assert _layers(digits_task.students["w1.0-c1"]()) == ["conv1", "fc1", "fc2"]
    assert _layers(digits_task.students["w0.5-f1"]()) == ["conv1", "conv2", "fc2"]
    assert _layers(mlp.students["w0.5-d1"]()) == ["fc1", "fc3"]


def test_custom_students_are_added_and_compressed(digits_task: Task, tmp_path) -> None:
    task = add_custom_students(digits_task, {"tiny": "tests.spaces.my_students:tiny"})
    assert "tiny" in task.students and "tiny" not in digits_task.students
    from spaces import DistillationSettings

    pool = StudentPool(task, WeightCache(tmp_path), DistillationSettings(epochs=2), seed=0)
    config = CompressionConfig(student="tiny", bits={"conv1": 8, "fc2": 4})
    cand = compress(pool, config, finetune=FinetuneSettings(epochs=0), seed=0)
    assert _layers(cand.model) == ["conv1", "fc2"]


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("tests.spaces.my_students:renamed", r"has layers the teacher lacks: \['1'\]"),
        ("tests.spaces.my_students:not_a_model", "must return a torch.nn.Module"),
        ("tests.spaces.my_students:missing", "has no 'missing'"),
        ("no_such_package.mod:f", "cannot import module"),
    ],
)
def test_bad_custom_students_fail_clearly(digits_task: Task, target: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        add_custom_students(digits_task, {"mine": target})


def test_custom_student_names_cannot_shadow(digits_task: Task) -> None:
    with pytest.raises(ValueError, match="clashes with a built-in student"):
        add_custom_students(digits_task, {"w0.5": "tests.spaces.my_students:tiny"})
