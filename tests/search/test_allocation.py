from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from evaluators import Task
from evaluators.budgets import Budget
from evaluators.cost import CostModel
from search.allocation import Allocation, values_estimate, warm_start_allocations
from spaces import SearchSpace, SpaceSettings, compressible_layers
from spaces.sensitivity import SensitivitySettings, SensitivityTable, measure_sensitivity
from tests.spaces.test_sensitivity import two_paths_table, two_paths_task

SIZE = ("accuracy", "size_bytes", "latency_ms")
BOPS = ("accuracy", "bops")


@pytest.mark.parametrize("objectives", [SIZE, BOPS])
@pytest.mark.parametrize("method", ["measured", "fisher"])
def test_bits_go_where_they_matter(objectives: tuple[str, ...], method: str) -> None:
    table = two_paths_table(method)
    task = two_paths_task()
    space = SearchSpace(
        ["loud", "quiet"],
        ["teacher"],
        SpaceSettings(bits=(2, 3, 4, 6, 8, 32), prune_max=0.5, prune_step=0.25),
    )
    costs = CostModel(task.model, {}, task.example_input)
    allocs = warm_start_allocations({"teacher": table}, costs, space, Budget(), objectives, 4)
    assert len(allocs) == 4
    for a in allocs:
        c = a.config
        # the two layers have the same shape and cost: every saving goes to the quiet one
        assert c.bits_of("loud") >= c.bits_of("quiet"), a
        assert c.prune_of("loud") <= c.prune_of("quiet"), a
    assert any(a.config.bits_of("loud") > a.config.bits_of("quiet") for a in allocs)
    # more budget, less predicted distortion
    distortions = [a.distortion for a in allocs]
    assert distortions == sorted(distortions, reverse=True)


def _digits_setup(
    digits_task: Task, settings: SpaceSettings
) -> tuple[SearchSpace, CostModel, SensitivityTable]:
    layers = list(compressible_layers(digits_task.model))
    space = SearchSpace(layers, ["teacher", *digits_task.students], settings)
    table = measure_sensitivity(
        digits_task.model,
        digits_task,
        name="teacher",
        bits={layer: [b for b in space.bits_choices(layer) if b < 32] for layer in layers},
        prune_ratios=dict.fromkeys(layers, (0.25, 0.5, 0.75, 0.77)),
        channel_ratios={},
        granularity="channel",
        settings=SensitivitySettings(method="measured", rows=200),
    )
    costs = CostModel(digits_task.model, dict(digits_task.students), digits_task.example_input)
    return space, costs, table


def _check_meets_budget(a: Allocation, costs: CostModel, space: SearchSpace) -> None:
    assert a.cost <= a.target, a
    figures = costs.figures(a.config)
    assert space.contains(a.config), a
    if a.cost_name == "size_bytes":
        assert figures["size_bound_bytes"] <= a.cost
    else:
        assert figures["bops"] == pytest.approx(a.cost, rel=1e-12)
    assert figures["size_bound_bytes" if a.cost_name == "size_bytes" else "bops"] <= a.target


@pytest.mark.parametrize(
    ("objectives", "budget"),
    [
        (SIZE, Budget()),
        (BOPS, Budget()),
        (SIZE, Budget(max_size_bytes=15_000)),
        (BOPS, Budget(max_bops=3e7)),
        (SIZE, Budget(max_bops=3e7)),  # a limit on the other figure constrains every rung
    ],
)
def test_every_allocation_meets_its_budget_on_digits(
    digits_task: Task, objectives: tuple[str, ...], budget: Budget
) -> None:
    settings = SpaceSettings(layer_bits={"fc2": (4, 8, 16)}, layer_prune_max={"conv1": 0.5})
    space, costs, table = _digits_setup(digits_task, settings)
    allocs = warm_start_allocations({"teacher": table}, costs, space, budget, objectives, 6)
    assert len(allocs) == 6
    assert [a.label for a in allocs] == [f"sensitivity:teacher:{i}/6" for i in range(1, 7)]
    baselines = {c.to_json() for c in space.baselines().values()}
    assert len({a.config.to_json() for a in allocs} | baselines) == 6 + len(baselines)
    cap = budget.max_size_bytes if objectives == SIZE else budget.max_bops
    for a in allocs:
        figures = costs.figures(a.config)
        assert budget.max_bops is None or figures["bops"] <= budget.max_bops
        assert a.cost_name == ("size_bytes" if objectives == SIZE else "bops")
        _check_meets_budget(a, costs, space)
        assert cap is None or a.target <= cap
        assert a.config.bits_of("fc2") in (4, 8, 16)
        assert a.config.prune_of("conv1") in (0.0, 0.25, 0.5)  # 0.75 is outside its grid
        assert all(r in (0.25, 0.5, 0.75) for r in a.config.prune.values())  # 0.77: off-grid
    # deterministic
    again = warm_start_allocations({"teacher": table}, costs, space, budget, objectives, 6)
    assert again == allocs


def test_students_share_the_warm_starts(digits_task: Task) -> None:
    space, costs, table = _digits_setup(digits_task, SpaceSettings(bits=(2, 4, 8)))
    torch.manual_seed(0)
    student = digits_task.students["w0.5"]()  # untrained is enough to allocate over
    student_table = measure_sensitivity(
        student.eval(),
        digits_task,
        name="w0.5",
        bits=dict.fromkeys(space.layers, (2, 4, 8)),
        prune_ratios={},
        channel_ratios={},
        granularity="channel",
        settings=SensitivitySettings(method="fisher", rows=100),
    )
    tables = {"teacher": table, "w0.5": student_table}
    allocs = warm_start_allocations(tables, costs, space, Budget(), BOPS, 5)
    models = [a.config.student for a in allocs]
    assert models == ["teacher"] * 3 + ["w0.5"] * 2  # the remainder goes to the teacher
    assert allocs[-1].label == "sensitivity:w0.5:2/2"
    for a in allocs:
        _check_meets_budget(a, costs, space)
    # fewer warm starts than models: the teacher only
    one = warm_start_allocations(tables, costs, space, Budget(), BOPS, 1)
    assert [a.config.student for a in one] == ["teacher"]
    assert warm_start_allocations(tables, costs, space, Budget(), BOPS, 0) == []
    # a student already below the budget's accuracy, uncompressed, gets none: all to the teacher
    floor = (student_table.base_metric + table.base_metric) / 2
    assert student_table.base_metric < floor <= table.base_metric
    kept = warm_start_allocations(tables, costs, space, Budget(), BOPS, 5, accuracy_floor=floor)
    assert [a.config.student for a in kept] == ["teacher"] * 5
    low = warm_start_allocations(
        tables, costs, space, Budget(), BOPS, 5, accuracy_floor=student_table.base_metric
    )
    assert [a.config.student for a in low] == models  # at the floor: still in


def test_nothing_fits_a_budget_below_the_cheapest_allocation(digits_task: Task) -> None:
    space, costs, table = _digits_setup(digits_task, SpaceSettings())
    tiny = Budget(max_size_bytes=100)
    assert warm_start_allocations({"teacher": table}, costs, space, tiny, SIZE, 4) == []


def test_values_estimate_is_the_smaller_encoding() -> None:
    assert values_estimate(1000, 4, 0.0) == 500  # dense
    assert values_estimate(1000, 4, 0.9) == 125 + 50  # bitmask and the 100 kept values
    assert values_estimate(1000, 32, 0.5) == 125 + 2000


def test_the_solver_s_native_prints_never_reach_the_output() -> None:
    """HiGHS prints debug lines from C++ inside ``milp``; the allocation silences file
    descriptor 1 around it (C's buffered ``printf`` and raw writes), and only there."""
    script = textwrap.dedent(
        """
        import ctypes, os
        from search.allocation import native_stdout_silenced
        print("before", flush=True)
        with native_stdout_silenced():
            ctypes.CDLL(None).printf(b"from C, buffered\\n")
            os.write(1, b"raw\\n")
            print("from Python")
        print("after", flush=True)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert res.stdout.splitlines() == ["before", "after"]


def test_int8_warm_starts_follow_on_the_part_of_the_space_int8_kernels_run(
    digits_task: Task,
) -> None:
    settings = SpaceSettings(
        bits=(4, 6, 7, 8, 32),
        act_bits=(8, 32),
        act_mode=("dynamic",),
        granularity=("g32", "channel"),
    )
    space, costs, table = _digits_setup(digits_task, settings)
    allocs = warm_start_allocations({"teacher": table}, costs, space, Budget(), SIZE, 3, n_int8=3)
    labels = [a.label for a in allocs]
    assert labels == [f"sensitivity:teacher:{i}/3" for i in (1, 2, 3)] + [
        f"sensitivity-int8:teacher:{i}/3" for i in (1, 2, 3)
    ]
    assert len({a.config.to_json() for a in allocs}) == 6
    for a in allocs[:3]:  # the size ladder: float activations, the first granularity
        assert a.config.act_bits == 32 and a.config.granularity == "g32"
    for a in allocs[3:]:  # dynamic int8 activations need <= 7 bits and a scale per row
        _check_meets_budget(a, costs, space)
        assert a.config.act_bits == 8 and a.config.act_mode == "dynamic"
        assert a.config.granularity == "channel"
        assert all(a.config.bits_of(layer) <= 7 for layer in space.layers)
    # the int8 ladder's top is uniform 7 bits (the widest the kernels run exactly)
    assert max(a.config.bits_of(layer) for a in allocs[3:] for layer in space.layers) == 7
    # nothing for the int8 kernels in a space without 8-bit activations or per-row scales
    for other in (
        SpaceSettings(bits=(4, 8, 32)),
        SpaceSettings(bits=(4, 8, 32), act_bits=(8, 32), granularity=("g32",)),
    ):
        space, _, _ = _digits_setup(digits_task, other)
        allocs = warm_start_allocations(
            {"teacher": table}, costs, space, Budget(), SIZE, 2, n_int8=3
        )
        assert [a.label.split(":")[0] for a in allocs] == ["sensitivity"] * 2


def test_the_int8_space_keeps_the_widths_each_mode_runs_exactly() -> None:
    from spaces.kernel_space import int8_space

    layers = ["a", "b"]
    static = SpaceSettings(
        bits=(4, 7, 8, 32), layer_bits={"b": (16, 32)}, act_bits=(8, 32), granularity=("channel",)
    )
    space = int8_space(SearchSpace(layers, ["teacher"], static))
    assert space is not None
    assert space.bits_choices("a") == (4, 7, 8)  # static int8 kernels take 8-bit weights
    assert space.bits_choices("b") == (16, 32)  # nothing narrower offered: stays float
    assert space.settings.act_bits == (8,) and space.settings.act_mode == ("static",)
    dynamic = SpaceSettings(
        bits=(4, 7, 8, 32), act_bits=(8, 32), act_mode=("dynamic",), granularity=("g64", "tensor")
    )
    space = int8_space(SearchSpace(layers, ["teacher"], dynamic))
    assert space is not None
    assert space.bits_choices("a") == (4, 7) and space.settings.granularity == ("tensor",)
    assert int8_space(SearchSpace(layers, ["teacher"], SpaceSettings(act_bits=(32,)))) is None
