"""8-bit activation quantization: calibrated on training batches, simulated exactly, deployable.

A layer with 8-bit activations quantizes its input and its output to unsigned 8-bit affine
codes, ``q = clamp(round(x / scale) + zero_point, 0, 127)``, and computes with
``(q - zero_point) * scale``. That is the arithmetic of torch's int8 kernels (quint8
activations, qint8 weights) and of ONNX Runtime's QLinearConv / QGemm, so the same candidate
deploys to either (the latency runtimes above this package) with the ranges it was evaluated with.

By default the codes use 7 of the 8 bits (``reduce_range``, as PyTorch's x86 default
observers do): x86 int8 kernels on CPUs without VNNI (AVX2, AVX-512 before Cascade Lake)
multiply uint8 by int8 with ``vpmaddubsw``, which saturates the int16 sum of two products; with
activations below 128 it never does (127 * 127 * 2 < 32767), so the kernels compute exactly what
is simulated on every x86 CPU. A candidate with ``act_codes = 255`` uses all 256 codes around
the layers whose weights have at most 7 bits (codes within +-63: 255 * 63 * 2 < 32767, exact
too; :meth:`spaces.CompressionConfig.act_codes_of`): twice the resolution. The code range is
kept per layer in the ``act_qmax`` attribute (set by :func:`attach`; the config carries it into
rebuilt artifacts).

Ranges are the minimum and maximum seen on training batches only (never the validation or test
split); zero is always representable, so ReLU outputs and zero padding stay exact. The
parameters live in the layer's ``act_qparams`` buffer, ``[in_scale, in_zero_point,
out_scale, out_zero_point]``, which is saved in the state dict and the packed artifact. The
quantization runs in forward hooks, so layer names and state-dict keys are unchanged, and
in training it passes gradients straight through inside the range (quantization-aware
fine-tuning).

**Activations after a layer.** When a layer's output goes straight into an ``nn.ReLU``,
``nn.ReLU6`` or ``nn.Hardtanh`` module and nowhere else (:func:`clipping_activations`), its
output range is that of the activation's output: the observed ``[min, max]`` clamped to
``[0, inf)``, ``[0, 6]`` or ``[min_val, max_val]``. The output quantization then already
computes the activation (its grid lies inside the activation's range), as ONNX Runtime and
TensorFlow Lite calibrate a convolution fused with its ReLU; the full pre-activation range would
spend most of the 128 codes on values the activation throws away.

Only floating-point tensors are activations: an integer input (an embedding's token ids) passes
through unchanged and its range stays ``(1.0, 0)``; the embedding's output rows are quantized.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from spaces.config import ACT_CODES, DEFAULT_ACT_CODES
from spaces.task import Split

QMIN, QMAX = 0, DEFAULT_ACT_CODES
BUFFER = "act_qparams"
#: The attribute holding a layer's largest code (a plain int; absent means :data:`QMAX`).
QMAX_ATTR = "act_qmax"
#: How ranges are chosen (``space.act_calibration``): the range seen, or the MSE-best shrink.
ACT_CALIBRATIONS = ("minmax", "mse")
#: Values kept per tensor and batch for the MSE search (a seeded random sample).
SAMPLE_PER_BATCH = 1 << 16
#: Shrink factors of the seen range tried by :func:`mse_range` (1.0: the range itself).
MSE_FACTORS = tuple(round(1.0 - 0.025 * i, 3) for i in range(29))  # 1.0 down to 0.3
#: Training rows the ranges are calibrated on (or the whole split when it is smaller).
CALIBRATION_ROWS = 512


def qparams(lo: float, hi: float, qmax: int = QMAX) -> tuple[float, int]:
    """Affine uint8 ``(scale, zero_point)`` covering ``[lo, hi]`` and zero on codes
    ``0..qmax``."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / (qmax - QMIN)
    if not scale > 0:
        return 1.0, 0
    scale = float(torch.tensor(scale, dtype=torch.float32))
    zero_point = int(min(qmax, max(QMIN, round(QMIN - lo / scale))))
    return scale, zero_point


def fake_quantize_activation(
    x: torch.Tensor, scale: float, zero_point: int, qmax: int = QMAX
) -> torch.Tensor:
    """``dequantize(quantize(x))`` on the uint8 grid (codes ``0..qmax``); straight-through
    gradient inside it."""
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, QMIN, qmax)


def activation_qmax(layer: nn.Module) -> int:
    """The largest activation code of ``layer`` (127 or 255)."""
    return int(getattr(layer, QMAX_ATTR, QMAX))


def _pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    if not args[0].is_floating_point():  # token ids, indices: codes already, not activations
        return args
    p = getattr(module, BUFFER)
    first = fake_quantize_activation(args[0], float(p[0]), int(p[1]), activation_qmax(module))
    return (first, *args[1:])


def _post_hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
    p = getattr(module, BUFFER)
    return fake_quantize_activation(output, float(p[2]), int(p[3]), activation_qmax(module))


def attach(layer: nn.Module, params: torch.Tensor | None = None, *, qmax: int = QMAX) -> None:
    """Give ``layer`` 8-bit activations on codes ``0..qmax`` (parameters set later by
    :func:`calibrate`)."""
    if qmax not in ACT_CODES:
        raise ValueError(f"'act_codes' must be one of {list(ACT_CODES)}. Got {qmax!r} instead.")
    if has_quantized_activations(layer):
        return
    value = params if params is not None else torch.tensor([1.0, 0.0, 1.0, 0.0])
    layer.register_buffer(BUFFER, value.detach().clone().float())
    setattr(layer, QMAX_ATTR, int(qmax))
    # module-level functions, not closures: a deep copy of the model keeps working hooks
    layer.register_forward_pre_hook(_pre_hook)
    layer.register_forward_hook(_post_hook)


def has_quantized_activations(layer: nn.Module) -> bool:
    return isinstance(getattr(layer, BUFFER, None), torch.Tensor)


def activation_params(layer: nn.Module) -> tuple[float, int, float, int]:
    """``(in_scale, in_zero_point, out_scale, out_zero_point)`` of a quantized layer."""
    p = getattr(layer, BUFFER)
    return float(p[0]), int(p[1]), float(p[2]), int(p[3])


@torch.no_grad()
def calibrate(
    model: nn.Module,
    layers: Iterable[nn.Module],
    train: Split,
    *,
    rows: int = CALIBRATION_ROWS,
    batch_size: int = 256,
    method: str = "minmax",
) -> None:
    """Set the activation ranges of ``layers`` from the model run on training rows.

    The hooks are switched off while observing (the ranges are those of float activations
    under the already-quantized weights), and the first ``rows`` rows of ``train`` are used:
    this function never sees another split. ``method``: ``"minmax"`` (the range seen) or
    ``"mse"`` (the range seen, shrunk by the factor that minimises the squared error of the
    quantized values on a fixed sample of them: :func:`mse_range`).
    """
    if method not in ACT_CALIBRATIONS:
        raise ValueError(
            f"'space.act_calibration' must be one of {list(ACT_CALIBRATIONS)}. Got {method!r}."
        )
    targets = list(layers)
    if not targets:
        return
    lo = {id(m): [float("inf"), float("inf")] for m in targets}
    hi = {id(m): [float("-inf"), float("-inf")] for m in targets}
    samples: dict[int, list[list[torch.Tensor]]] = {id(m): [[], []] for m in targets}
    generator = torch.Generator().manual_seed(0)

    def observe(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        for i, t in enumerate((args[0], output)):
            if not t.is_floating_point():  # integer inputs are never quantized (_pre_hook)
                continue
            lo[id(module)][i] = min(lo[id(module)][i], float(t.min()))
            hi[id(module)][i] = max(hi[id(module)][i], float(t.max()))
            if method == "mse":
                flat = t.detach().reshape(-1).float()
                if flat.numel() > SAMPLE_PER_BATCH:
                    pick = torch.randint(flat.numel(), (SAMPLE_PER_BATCH,), generator=generator)
                    flat = flat[pick]
                samples[id(module)][i].append(flat.cpu())

    saved = {id(m): (dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in targets}
    handles = []
    for m in targets:
        m._forward_pre_hooks.clear()
        m._forward_hooks.clear()
    was_training = model.training
    model.eval()
    try:
        bounds = clipping_activations(model, targets, next(iter(train.head(2).batches(2)))[0])
        handles += [m.register_forward_hook(observe) for m in targets]
        for inputs, _ in train.head(rows).batches(batch_size):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m in targets:
            pre, post = saved[id(m)]
            m._forward_pre_hooks.update(pre)
            m._forward_hooks.update(post)
        model.train(was_training)
    for m in targets:
        in_lo, in_hi = lo[id(m)][0], hi[id(m)][0]
        out_lo, out_hi = lo[id(m)][1], hi[id(m)][1]
        if id(m) in bounds:  # the range of the activation's output
            a_lo, a_hi = bounds[id(m)]
            out_lo, out_hi = min(max(out_lo, a_lo), a_hi), min(max(out_hi, a_lo), a_hi)
        qmax = activation_qmax(m)
        if method == "mse":
            seen_in, seen_out = samples[id(m)]
            if seen_in:
                in_lo, in_hi = mse_range(torch.cat(seen_in), in_lo, in_hi, qmax)
            if seen_out:
                values = torch.cat(seen_out).clamp(out_lo, out_hi)  # what the activation keeps
                out_lo, out_hi = mse_range(values, out_lo, out_hi, qmax)
        s_in, z_in = qparams(in_lo, in_hi, qmax)
        s_out, z_out = qparams(out_lo, out_hi, qmax)
        getattr(m, BUFFER).copy_(torch.tensor([s_in, z_in, s_out, z_out], dtype=torch.float32))


def mse_range(values: torch.Tensor, lo: float, hi: float, qmax: int = QMAX) -> tuple[float, float]:
    """``(lo, hi)`` shrunk by the factor in :data:`MSE_FACTORS` whose uint8 grid (codes
    ``0..qmax``) quantizes ``values`` with the least squared error: clipping a few outliers buys
    a finer grid for everything else. Values outside the chosen range are clipped to it, as the
    deployed kernels do. Ties go to the wider range."""
    best, best_err = (lo, hi), math.inf
    for factor in MSE_FACTORS:
        scale, zero = qparams(lo * factor, hi * factor, qmax)
        err = float((fake_quantize_activation(values, scale, zero, qmax) - values).pow(2).sum())
        if err < best_err:
            best, best_err = (lo * factor, hi * factor), err
    return best


#: Activation modules whose output range a layer's output range is clipped to.
CLIPPING_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Hardtanh)  # ReLU6 is a Hardtanh


def _bounds(act: nn.Module) -> tuple[float, float]:
    if isinstance(act, nn.Hardtanh):
        return float(act.min_val), float(act.max_val)
    return 0.0, math.inf


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def clipping_activations(
    model: nn.Module, layers: Iterable[nn.Module], inputs: tuple[torch.Tensor, ...]
) -> dict[int, tuple[float, float]]:
    """``{id(layer): (lo, hi)}`` for layers whose output only feeds a clipping activation.

    Found on one forward pass of ``inputs`` (a couple of rows) through the autograd graph: each
    layer's output is made a fresh differentiable tensor, each call of an ``nn.ReLU`` /
    ``nn.ReLU6`` / ``nn.Hardtanh`` module (in place or not) records its graph node, and a layer
    qualifies when, at every call, its output's only consumer in the graph from the model's
    outputs is such an activation called on that very tensor. A residual add, a second reader
    or the output being returned keeps the full range. Uses that carry no gradient (a
    comparison, ``argmax``, ``detach``) are not seen. ``(lo, hi)`` is the activation's range
    (``[0, inf)`` for ``nn.ReLU``). The layers' own hooks must be off (as :func:`calibrate`
    has them).
    """
    targets = {id(m) for m in layers}
    layer_nodes: dict[int, list[object]] = {i: [] for i in targets}
    act_nodes: dict[object, tuple[object, tuple[float, float]]] = {}
    pending: dict[int, object] = {}

    def fresh(module: nn.Module, args: object, output: object) -> object:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            layer_nodes[id(module)].append(None)
            return output
        source = output if output.requires_grad else output.detach().requires_grad_()
        out = source.clone()  # a node of its own, connected to the layers before
        layer_nodes[id(module)].append(out.grad_fn)
        return out

    def act_in(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        pending[id(module)] = args[0].grad_fn if isinstance(args[0], torch.Tensor) else None

    def act_out(module: nn.Module, args: object, output: object) -> None:
        node = output.grad_fn if isinstance(output, torch.Tensor) else None
        if node is not None:
            act_nodes[node] = (pending.pop(id(module), None), _bounds(module))

    handles = []
    for m in model.modules():
        if id(m) in targets:
            handles.append(m.register_forward_hook(fresh))
        elif isinstance(m, CLIPPING_TYPES):
            handles += [m.register_forward_pre_hook(act_in), m.register_forward_hook(act_out)]
    try:
        with torch.enable_grad():
            roots = [t.grad_fn for t in _tensors(model(*inputs)) if t.grad_fn is not None]
    finally:
        for h in handles:
            h.remove()
    consumers: dict[object, list[object]] = {node: [None] for node in roots}  # None: returned
    seen, stack = set(roots), list(roots)
    while stack:
        node = stack.pop()
        for nxt, _ in getattr(node, "next_functions", ()):
            if nxt is None:
                continue
            consumers.setdefault(nxt, []).append(node)
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    found: dict[int, tuple[float, float]] = {}
    for key, nodes in layer_nodes.items():
        ranges = set()
        for made in nodes:
            users = consumers.get(made, [])
            act = act_nodes.get(users[0]) if len(users) == 1 else None
            if made is None or act is None or act[0] is not made:
                break
            ranges.add(act[1])
        else:
            if len(ranges) == 1:
                found[key] = ranges.pop()
    return found
