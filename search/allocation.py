"""Warm starts from sensitivities: per-layer bits and pruning along a ladder of budgets.

For each model (the teacher, each searched student with a sensitivity table) and each rung of
a ladder of cost targets, the allocation picks one option per layer (a bit width of the
space and an unstructured pruning ratio: 0 or a probed one on the space's grid) so that the
predicted distortion, the sum of the layers' own distortions (bits and pruning add: the
usual independence approximation, as in HAWQ-V3's integer program), is smallest while the
cost stays within the target. It is a multiple-choice knapsack, solved exactly as an integer
program with :func:`scipy.optimize.milp`. Channel pruning is left to the search: it changes
other layers' shapes, so its cost is not additive per layer.

Costs come from :class:`evaluators.cost.ArchitectureCost`, per layer (both figures add over
layers):

- ``"bops"``: exactly :meth:`ArchitectureCost.bops`;
- ``"size_bytes"``: :meth:`ArchitectureCost.size_lower_bound` (scales, biases, everything
  else in the artifact, exact) plus an estimate of the weight values, the smaller of the
  packer's dense and bitmask encodings (``evaluators.cost`` bounds the values by a few bytes
  whatever the bits, which would make every width look free). So ``cost`` is never below the
  configuration's ``size_bound_bytes``, and a rung's target caps both.

The ladder runs geometrically from the smallest achievable cost (every layer at its
cheapest option) to the cost of uniform 8-bit weights, capped by the budget's limit on that
figure; its lowest rung (everything at its cheapest, rarely worth a trial) is left out. A
budget limit on the other figure is a second constraint of every rung, so every warm start
passes the trial's cheap checks. Weight granularity and rounding are the space's first
choices (rounding changes neither the BOPs nor the size estimate; the probes round to nearest).
Activations stay float when the space offers it: 8-bit activations are not probed, so the
predicted distortion would not account for them (the sampler still tries them); only when the
ladder or a budget is on BOPs, which 8-bit activations divide by four, do the warm starts
take them. So they seed the front's size axis at the float model's speed; the latency axis
gets ``int8_warm_starts`` more, on the same ladder over the part of the space that int8 kernels
run (:func:`spaces.kernel_space.int8_space`: 8-bit activations, widths the kernels take
exactly, one weight scale per row), with the table's distortions for the space's first
granularity standing in for those of per-row scales.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from evaluators.budgets import Budget
from evaluators.cost import ArchitectureCost, CostModel, LayerShape
from search.native_output import native_stdout_silenced
from spaces.config import FLOAT_BITS, TEACHER, CompressionConfig, preferred_act_mode
from spaces.kernel_space import int8_space
from spaces.pruning import pruned_count
from spaces.sensitivity import SensitivityTable
from spaces.space import SearchSpace

#: Bit width of the ladder's top rung: uniform 8-bit weights, the usual int8 deployment.
TOP_BITS = 8
#: Denser ladders tried in turn when rungs give the same allocation (or a baseline's).
_DENSER = (1, 2, 4, 8)


@dataclass(frozen=True)
class Allocation:
    """One warm start.

    Attributes:
        config: The candidate (in the search space).
        cost_name: ``"size_bytes"`` or ``"bops"``: what the ladder budgets.
        cost: The allocation's cost: estimated packed bytes (never below the size lower
            bound) or BOPs.
        target: The ladder rung's budget (``cost <= target``).
        distortion: Predicted: the sum of its per-layer distortions.
        label: Where it came from, e.g. ``"sensitivity:teacher:3/8"`` (stored on the trial).
    """

    config: CompressionConfig
    cost_name: str
    cost: float
    target: float
    distortion: float
    label: str


@dataclass(frozen=True)
class _Option:
    bits: int
    prune: float
    distortion: float
    cost: Mapping[str, float]  # by figure: "size_bytes" and "bops"


def values_estimate(numel: int, bits: int, ratio: float) -> int:
    """Bytes of a layer's weight values: the smaller of dense and bitmask encodings.

    Pruned weights are the zeros a bitmask skips; quantization may zero more (the packer
    then does better), so this estimates the real payload from above for those two
    encodings.
    """
    kept = numel - pruned_count(numel, ratio)
    return min(math.ceil(numel * bits / 8), math.ceil(numel / 8) + math.ceil(kept * bits / 8))


def warm_start_allocations(
    tables: Mapping[str, SensitivityTable],
    costs: CostModel,
    space: SearchSpace,
    budget: Budget,
    objectives: Sequence[str],
    n: int,
    *,
    packed_size: Callable[[CompressionConfig], int] | None = None,
    n_int8: int = 0,
    accuracy_floor: float | None = None,
) -> list[Allocation]:
    """Up to ``n`` allocations (then up to ``n_int8`` for the int8 kernels), over the models
    that have a table, deterministic.

    ``packed_size(config)``, when given, packs a configuration for real (no fine-tuning) and
    returns its bytes: it is called once per model, on the model's uniform 8-bit
    configuration, to measure what the estimate leaves out (the artifact's header: each
    tensor's dtype, shape and offsets, the metadata), which is then added to every rung's
    cost, so a warm start packs within a size budget.

    Args:
        tables: Sensitivity tables by model name (``"teacher"`` or a student's).
        costs: The task's cost model.
        space: The study's space; every allocation is in it.
        budget: The study's budget: ``max_size_bytes`` / ``max_bops`` cap the ladder.
        objectives: The study's objectives: the ladder budgets ``size_bytes`` when it is
            one, else ``bops``.
        n: How many to return at most.
        n_int8: How many more, on the same ladder over :func:`spaces.kernel_space.int8_space`
            (8-bit activations, widths and scales the int8 kernels run; labelled
            ``"sensitivity-int8:..."``): none when the space has no such part.
        accuracy_floor: The budget's lowest accuracy: a student whose table's own metric
            (``base_metric``, uncompressed) is already below it gets no warm start, its share
            going to the other models (compressing it can only keep it infeasible).

    ``n`` is split evenly over the models of ``space.students`` that have a table, in that
    order; the remainder goes to the teacher (or, without it, to the first), so with fewer
    warm starts than models only the teacher gets any. A model yields fewer than its share
    when its rungs give the same allocation, or a baseline's, or nothing fits its budget.
    """
    for key, value in (("warm_starts", n), ("int8_warm_starts", n_int8)):
        if value < 0:
            raise ValueError(f"'sensitivity.{key}' must be an int >= 0. Got {value!r} instead.")
    cost_name = "size_bytes" if "size_bytes" in objectives else "bops"
    models = [
        m
        for m in space.students
        if m in tables
        and (m == TEACHER or accuracy_floor is None or tables[m].base_metric >= accuracy_floor)
    ]
    seen = {c.to_json() for c in {**space.baselines(), **space.student_baselines()}.values()}
    caps = {"size_bytes": budget.max_size_bytes, "bops": budget.max_bops}
    kernels = int8_space(space) if n_int8 > 0 else None
    ladders = [(space, n, cost_name == "bops" or budget.max_bops is not None, "sensitivity")]
    if kernels is not None:
        ladders.append((kernels, n_int8, True, "sensitivity-int8"))
    out: list[Allocation] = []
    for where, count, int8_acts, prefix in ladders:
        share = warm_start_shares(models, count)
        for model in models:
            if share[model] > 0:
                arch = costs.architecture(model)
                planner = _Planner(model, tables[model], arch, where, int8_acts=int8_acts)
                if packed_size is not None:
                    planner.measure_overhead(packed_size)
                found = planner.allocations(cost_name, share[model], caps, seen, prefix)
                seen |= {a.config.to_json() for a in found}
                out += found
    return out


def warm_start_shares(models: Sequence[str], n: int) -> dict[str, int]:
    """How many of ``n`` warm starts each of ``models`` gets: an even split, the remainder to
    the teacher (or, without it, to the first model). Models with 0 need no sensitivity."""
    if not models:
        return {}
    share = dict.fromkeys(models, n // len(models))
    share[TEACHER if TEACHER in share else models[0]] += n % len(models)
    return share


class _Planner:
    """One model's options per layer, and the ladder of allocations over them."""

    def __init__(
        self,
        model: str,
        table: SensitivityTable,
        arch: ArchitectureCost,
        space: SearchSpace,
        *,
        int8_acts: bool = False,
    ) -> None:
        self.model = model
        self.arch = arch
        self.space = space
        acts = space.settings.act_bits
        self.act_bits = (
            8 if int8_acts and 8 in acts else (FLOAT_BITS if FLOAT_BITS in acts else acts[0])
        )
        self.granularity = space.settings.granularity[0]
        self.rounding = space.settings.rounding[0]
        self.act_codes = space.settings.act_codes[0]
        self.act_mode = preferred_act_mode(space.settings.act_mode)
        self.options = {
            layer: self._layer_options(layer, shape, table) for layer, shape in arch.layers.items()
        }
        # what no layer's choice changes: the header's fixed part and the other tensors
        self.constant = {"size_bytes": 8.0 + arch.name_bytes + arch.other_bytes, "bops": 0.0}
        #: Bytes the estimate leaves out, measured by :meth:`measure_overhead` (0 until then).
        self.overhead = 0.0

    def _option(self, layer: str, shape: LayerShape, bits: int, ratio: float, d: float) -> _Option:
        alone = ArchitectureCost(layers={layer: shape}, other_bytes=0, name_bytes=0)
        config = CompressionConfig(
            bits={layer: bits},
            prune={layer: ratio},
            act_bits=self.act_bits,
            granularity=self.granularity,
        )
        size = alone.size_lower_bound(config) - 8 + values_estimate(shape.numel, bits, ratio)
        return _Option(bits, ratio, d, {"size_bytes": float(size), "bops": alone.bops(config)})

    def _ratios(self, layer: str, table: SensitivityTable) -> list[float]:
        s = self.space.settings
        step = s.prune_step
        high = round(int(s.layer_prune_max.get(layer, s.prune_max) / step + 1e-9) * step, 10)
        ratios = [0.0]
        for value, _ in table.points("prune", layer):
            k = round(value / step)
            if abs(value / step - k) < 1e-6 and 0 < k * step <= high + 1e-12:
                ratios.append(round(k * step, 10))
        return sorted(set(ratios))

    def _layer_options(
        self, layer: str, shape: LayerShape, table: SensitivityTable
    ) -> list[_Option]:
        options: list[_Option] = []
        choices = self.space.bits_choices(layer)
        for bits in choices:
            for ratio in self._ratios(layer, table):
                try:
                    d = table.distortion("bits", layer, bits)
                    d += table.distortion("prune", layer, ratio)
                except KeyError:  # a width never probed on this layer: not offered
                    continue
                if not math.isfinite(d):  # the probe broke the model (NaN, inf): hopeless
                    continue
                options.append(self._option(layer, shape, bits, ratio, d))
        if not options:  # nothing probed at all: the widest width, unpruned, as free of loss
            options.append(self._option(layer, shape, max(choices), 0.0, 0.0))
        return options

    def measure_overhead(self, packed_size: Callable[[CompressionConfig], int]) -> None:
        """Pack the uniform 8-bit configuration once; what the estimate lacks is added to
        every size from now on (never subtracted: the estimate stays an upper guess)."""
        reference = {}
        for layer, options in self.options.items():
            widths = sorted({o.bits for o in options})
            narrower = [b for b in widths if b <= TOP_BITS]
            bits = narrower[-1] if narrower else widths[0]
            reference[layer] = next(o for o in options if o.bits == bits and o.prune == 0.0)
        config = self._config(reference)
        missing = packed_size(config) - self.cost("size_bytes", config)
        if missing > 0:
            self.overhead += missing
            self.constant["size_bytes"] += missing

    def _top(self, name: str) -> float:
        """The cost of uniform 8-bit weights (or the nearest width below that a layer offers)."""
        total = self.constant[name]
        for options in self.options.values():
            widths = sorted({o.bits for o in options})
            narrower = [b for b in widths if b <= TOP_BITS]
            bits = narrower[-1] if narrower else widths[0]
            # every width offered comes unpruned too (ratio 0 always has distortion 0)
            total += next(o.cost[name] for o in options if o.bits == bits and o.prune == 0.0)
        return total

    def allocations(
        self,
        name: str,
        k: int,
        caps: Mapping[str, float | None],
        baselines: set[str],
        prefix: str = "sensitivity",
    ) -> list[Allocation]:
        """Up to ``k`` distinct allocations along the ladder of ``name``, cheapest first,
        none of them in ``baselines`` (configurations as JSON), labelled ``prefix:model:j/k``.

        ``caps`` (the budget's limits by figure) cap the ladder's top; a cap on the other
        figure is a constraint of every rung.
        """
        low = self.constant[name]
        low += sum(min(o.cost[name] for o in opts) for opts in self.options.values())
        cap = caps.get(name)
        top = self._top(name) if cap is None else min(self._top(name), cap)
        if top <= low:
            return []
        found: dict[str, Allocation] = {}
        for denser in _DENSER:
            found = {}
            for target in _ladder(low, top, k * denser):
                alloc = self._solve(name, target, caps)
                if alloc is not None and alloc.config.to_json() not in baselines:
                    found.setdefault(alloc.config.to_json(), alloc)
            if len(found) >= k:
                break
        ordered = sorted(found.values(), key=lambda a: (a.target, a.cost))
        if len(ordered) > k:  # spread over the ladder, keeping the top rung
            ordered = [ordered[round((j + 1) * len(ordered) / k) - 1] for j in range(k)]
        return [
            dataclasses.replace(a, label=f"{prefix}:{self.model}:{j + 1}/{len(ordered)}")
            for j, a in enumerate(ordered)
        ]

    def _solve(
        self, name: str, target: float, caps: Mapping[str, float | None]
    ) -> Allocation | None:
        """The least-distortion choice of one option per layer within ``target`` (and caps)."""
        layers = list(self.options)
        flat = [(i, o) for i, layer in enumerate(layers) for o in self.options[layer]]
        dist = np.array([o.distortion for _, o in flat])
        cost = np.array([o.cost[name] for _, o in flat])
        # ties (equal distortion, e.g. 16 and 32 bits) go to the cheaper option: a cost term
        # too small to outweigh any real difference in distortion
        positive = dist[dist > 0]
        tie = (positive.min() if positive.size else 1.0) * 1e-3
        most = sum(max(o.cost[name] for o in self.options[layer]) for layer in layers)
        pick = np.zeros((len(layers), len(flat)))
        for j, (i, _) in enumerate(flat):
            pick[i, j] = 1.0
        limits = {name: target} | {k: v for k, v in caps.items() if k != name and v is not None}
        rows = [LinearConstraint(pick, 1, 1)]
        for figure, limit in limits.items():
            room = limit - self.constant[figure]
            scale = max(abs(room), 1.0)
            row = np.array([o.cost[figure] for _, o in flat])[None, :] / scale
            # a hair inside the limit: the solver's feasibility tolerance is relative
            rows.append(LinearConstraint(row, -np.inf, room / scale - 1e-7))
        with native_stdout_silenced():
            res = milp(
                dist + tie * cost / max(most, 1.0),
                integrality=np.ones(len(flat)),
                bounds=Bounds(0, 1),
                constraints=rows,
                # HiGHS's presolve prints a debug line to stdout on some problems (scipy
                # 1.17); these problems are small enough not to need it
                options={"presolve": False, "mip_rel_gap": 1e-6},
            )
        if res.x is None:
            return None
        chosen = {layers[i]: o for j, (i, o) in enumerate(flat) if res.x[j] > 0.5}
        config = self._config(chosen)
        within = all(self.cost(f, config) <= limit for f, limit in limits.items())
        if not within or not self.space.contains(config):
            return None
        distortion = float(sum(o.distortion for o in chosen.values()))
        return Allocation(config, name, self.cost(name, config), target, distortion, "")

    def _config(self, chosen: Mapping[str, _Option]) -> CompressionConfig:
        bits = {layer: o.bits for layer, o in chosen.items()}
        # teacher layers a student lacks are ignored by it; they take a value of the space
        for layer in self.space.layers:
            if layer not in bits:
                choices = self.space.bits_choices(layer)
                bits[layer] = FLOAT_BITS if FLOAT_BITS in choices else max(choices)
        return CompressionConfig(
            student=self.model,
            bits=bits,
            prune={layer: o.prune for layer, o in chosen.items()},
            act_bits=self.act_bits,
            granularity=self.granularity,
            rounding=self.rounding,
            act_codes=self.act_codes,
            int8_target=self.space.settings.int8_target,
            act_mode=self.act_mode,
        )

    def cost(self, name: str, config: CompressionConfig) -> float:
        """The whole cost of ``config`` as the ladder counts it (``"size_bytes"``, ``"bops"``)."""
        config = config.restricted_to(list(self.arch.layers))
        if name == "bops":
            return self.arch.bops(config)
        values = sum(
            values_estimate(shape.numel, config.bits_of(layer), config.prune_of(layer))
            for layer, shape in self.arch.layers.items()
        )
        return float(self.arch.size_lower_bound(config) + values + self.overhead)


def _ladder(low: float, top: float, k: int) -> list[float]:
    """``k`` targets above ``low`` up to ``top``, geometric (linear when ``low`` is 0)."""
    if low <= 0:
        return [top * (i + 1) / k for i in range(k)]
    return [low * (top / low) ** ((i + 1) / k) for i in range(k)]
