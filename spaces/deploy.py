"""Deployable forms of a compressed model: torch int8 kernels and ONNX (float or int8 QDQ).

A compressed model (from :func:`spaces.compress` or :func:`spaces.artifacts.load_candidate`)
is a float torch model whose weights are exactly ``codes * scale`` and whose 8-bit-activation
layers quantize their inputs and outputs in forward hooks. Both forms below compute with those
same integers:

- :func:`to_torch_int8`: every layer with 8-bit activations becomes torch's quantized module
  (``quint8`` activations, ``qint8`` weights, per-channel or per-tensor, float bias); the input
  is quantized with the calibrated range, the output dequantized, so the rest of the model
  (activations functions, pooling, other float layers) is unchanged.
- :func:`to_onnx`: the model exported to ONNX with the legacy TorchScript exporter (fast, and
  the activation hooks become ``QuantizeLinear``/``DequantizeLinear`` pairs). With
  ``int8=True`` each integer layer's weight is stored as an ``int8`` initializer followed by
  ``DequantizeLinear`` (QDQ format): ONNX Runtime fuses Q/DQ around a Conv or Gemm into
  QLinearConv / QGemm and runs integer kernels. Either way the graph is rewritten exactly by
  :func:`spaces.qdq_graph.simplify` (activations that cannot change the codes before them,
  dequantize -> quantize pairs, zero pads between them), so consecutive integer layers run
  without a float round trip.

Weights of fewer than 8 bits are held in int8 here (their codes fit) and computed by the int8
kernels; the packed artifact stores them at their real width.

Group-wise layers (``"g128"``, ``"g64"``, ``"g32"`` scales, several per output row) have no
per-channel int8 kernel, in torch or in ONNX Runtime's QLinearConv / QGemm: both forms keep
them as float layers computing with their dequantized weights (exactly ``codes * scale``),
as 16-bit layers are kept, with their activation quantize / dequantize, where they have it,
around the float kernel. A group-wise layer whose rows fit in one group has one scale per
row and is deployed as a per-channel integer layer (:func:`kernel_codes`). ``to_onnx(...,
nbits=True)`` instead stores each group-wise ``nn.Linear`` packed at 4 (or 8) bits as ONNX
Runtime's ``MatMulNBits`` (:mod:`spaces.onnx_nbits`), the same numbers; it is not faster on
this project's CPUs at one thread, so the latency runtime does not use it (README "ONNX").

Dynamic activations (``act_mode = "dynamic"``, :mod:`spaces.dynamic_acts`) deploy to ONNX
Runtime's integer ``MatMul`` (``DynamicQuantizeMatMul``) in :func:`to_onnx`; torch's dynamic
quantized ``Linear`` does not compute the same numbers (its x86 default quantizes activations
to 7 bits, ``reduce_range``), so :func:`to_torch_int8` keeps those layers in their float
simulation: their speed-up is ONNX Runtime's.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import dynamic_acts, onnx_nbits, qdq_graph
from spaces.activations import (
    QMAX,
    QMIN,
    activation_params,
    activation_qmax,
    has_quantized_activations,
)
from spaces.layers import compressible_layers
from spaces.quantization import QuantizedWeight, weight_codes

OPSET = 17


def _int8_weight(code: QuantizedWeight) -> torch.Tensor:
    scale = code.scale.double()
    if scale.numel() > 1:
        zeros = torch.zeros(scale.numel(), dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(code.q, scale, zeros, 0)
    return torch._make_per_tensor_quantized_tensor(code.q, float(scale), 0)


def _quantized_module(layer: nn.Module, code: QuantizedWeight, out: tuple[float, int]) -> Any:
    import torch.ao.nn.quantized as nnq

    bias = layer.bias.detach().float() if isinstance(layer.bias, torch.Tensor) else None
    q: Any
    if isinstance(layer, nn.Linear):
        q = nnq.Linear(layer.in_features, layer.out_features, bias_=bias is not None)
    elif isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        cls = nnq.Conv1d if isinstance(layer, nn.Conv1d) else nnq.Conv2d
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"torch int8 kernels need explicit zero padding ({layer}).")
        q = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,  # type: ignore[arg-type]
            stride=layer.stride,  # type: ignore[arg-type]
            padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation,  # type: ignore[arg-type]
            groups=layer.groups,
            bias=bias is not None,
        )
    else:
        raise ValueError(f"No torch int8 kernel for {type(layer).__name__}.")
    q.set_weight_bias(_int8_weight(code), bias)
    q.scale, q.zero_point = float(out[0]), int(out[1])
    return q


class Int8Layer(nn.Module):
    """A torch int8 kernel between a quantize of its input and a dequantize of its output."""

    def __init__(
        self, op: nn.Module, in_scale: float, in_zero_point: int, qmax: int = QMAX
    ) -> None:
        super().__init__()
        self.op = op
        self.in_scale = in_scale
        self.in_zero_point = in_zero_point
        # quint8 codes run to 255, the simulation's to qmax: both ends are clamped to its grid
        self.in_min, self.in_max = _grid(in_scale, in_zero_point, qmax)
        self.out_min, self.out_max = _grid(float(op.scale), int(op.zero_point), qmax)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(self.in_min, self.in_max)
        q = torch.quantize_per_tensor(x, self.in_scale, self.in_zero_point, torch.quint8)
        out: torch.Tensor = self.op(q).dequantize().clamp_(self.out_min, self.out_max)
        return out


def _grid(scale: float, zero_point: int, qmax: int) -> tuple[float, float]:
    """The smallest and largest value of the simulation's grid, as float32 computes them."""
    ends = (torch.tensor([QMIN, qmax]) - zero_point).float() * torch.tensor(scale).float()
    return float(ends[0]), float(ends[1])


def kernel_codes(layer: nn.Module) -> QuantizedWeight | None:
    """``layer``'s integer codes in a form per-channel / per-tensor int8 kernels compute with.

    ``None`` for a float layer and for a group-wise layer with several groups per row (its
    scales vary along a row, which those kernels cannot express); a group-wise layer with
    one group per row is returned with per-channel scales (the same numbers).
    """
    code = weight_codes(layer)
    if code is None or code.group_size is None:
        return code
    if code.scale.dim() == 2 and code.scale.shape[1] == 1:
        return QuantizedWeight(q=code.q, scale=code.scale.reshape(-1), bits=code.bits)
    return None


#: Layer types with a torch / ONNX Runtime int8 kernel. An embedding is a table lookup: it keeps
#: its float form (integer-valued weights) and its output's quantize / dequantize.
INT8_KERNEL_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def int8_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers that run on int8 kernels: integer weights, 8-bit activations and a kernel.

    Group-wise layers with several groups per row are not among them (see
    :func:`kernel_codes`): they run as float layers.
    """
    return {
        name: layer
        for name, layer in compressible_layers(model).items()
        if isinstance(layer, INT8_KERNEL_TYPES)
        and has_quantized_activations(layer)
        and kernel_codes(layer) is not None
    }


def to_torch_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose 8-bit layers run on torch's int8 kernels (x86 / fbgemm)."""
    out = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        # torch 2.13 marks quantized tensors deprecated; its int8 kernels still ship and run
        warnings.simplefilter("ignore", UserWarning)
        _swap_int8_layers(out)
    return out


def _swap_int8_layers(out: nn.Module) -> None:
    for name, layer in int8_layers(out).items():
        code = kernel_codes(layer)
        if code is None:  # pragma: no cover - int8_layers checked it
            continue
        s_in, z_in, s_out, z_out = activation_params(layer)
        parent_name, _, leaf = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        op = _quantized_module(layer, code, (s_out, z_out))
        setattr(parent, leaf, Int8Layer(op, s_in, z_in, activation_qmax(layer)))


def _names(example_input: tuple[torch.Tensor, ...]) -> list[str]:
    return (
        ["input"] if len(example_input) == 1 else [f"input{i}" for i in range(len(example_input))]
    )


def to_onnx(
    model: nn.Module,
    example_input: tuple[torch.Tensor, ...],
    *,
    int8: bool,
    kernels_only: bool = False,
    nbits: bool = False,
) -> bytes:
    """The model as ONNX bytes (batch dimension dynamic), float or int8 QDQ weights.

    Activation quantization, where the model has it, is exported as Q/DQ pairs either way, so
    the ONNX model computes what the torch model computes. ``kernels_only`` limits int8
    weights to the layers that also quantize their activations: ONNX Runtime does not fold a
    ``DequantizeLinear`` on a weight that feeds a float kernel, so a weight-only integer layer
    runs faster with its float weights (the latency runtime uses this; files use int8).
    Group-wise layers keep float weights either way (see :func:`kernel_codes`), unless
    ``nbits``: then each group-wise ``nn.Linear`` becomes ONNX Runtime's ``MatMulNBits``
    with its packed codes and scales (:mod:`spaces.onnx_nbits`; the same numbers).

    Layers with dynamic activations (:mod:`spaces.dynamic_acts`) export, with ``int8``, as
    ``DynamicQuantizeLinear`` -> ``MatMulInteger`` on their int8 codes -> ``Cast`` -> ``Mul``
    by the scales (ONNX Runtime fuses it into ``DynamicQuantizeMatMul``), whatever
    ``kernels_only``; without ``int8`` their input becomes ``DynamicQuantizeLinear`` +
    ``DequantizeLinear`` before the float layer (the same numbers either way).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = model.eval()
    names = _names(example_input)
    exported = onnx_nbits.nbits_export_model(model) if nbits else model
    dynamic = dynamic_acts.dynamic_int8_layers(model) if int8 else {}
    if dynamic:
        exported = dynamic_acts.dynamic_export_model(exported)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            exported,
            tuple(example_input),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["output"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
            custom_opsets={onnx_nbits.DOMAIN: 1} if nbits else None,
        )
    proto = onnx.load_from_string(buf.getvalue())
    qdq_graph.simplify(proto.graph)
    if not int8 and not nbits:
        return bytes(proto.SerializeToString())
    if nbits:
        onnx_nbits.finish(proto)
    if not int8:
        return bytes(proto.SerializeToString())
    inits = {init.name: init for init in proto.graph.initializer}
    nodes = []
    chosen = int8_layers(model) if kernels_only else compressible_layers(model)
    for name, layer in chosen.items():
        code = kernel_codes(layer)
        if code is None or name in dynamic:  # dynamic layers: integer MatMuls already
            continue
        q, axis = code.q.numpy().astype(np.int8), 0
        key = f"{name}.weight"
        if key not in inits:
            # a Linear on inputs of more than 2 dimensions exports as MatMul on a transposed
            # copy of its weight (an initializer of another name): QDQ that copy, axis 1, where
            # the activations are quantized too (ONNX Runtime fuses it into an integer
            # MatMul). A weight-only one keeps float weights: ONNX Runtime would turn its
            # DequantizeLinear + MatMul into MatMulNBits with int8 activations (its session
            # default), which no longer computes the candidate's numbers
            found = _transposed_weight(inits, layer) if has_quantized_activations(layer) else None
            if found is None:
                continue
            key, q, axis = found, np.ascontiguousarray(q.T), 1
        proto.graph.initializer.remove(inits.pop(key))
        scale = code.scale.float().numpy()
        per_channel = scale.size > 1
        proto.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{key}.q"),
                numpy_helper.from_array(
                    scale if per_channel else scale.reshape(()), f"{key}.scale"
                ),
                numpy_helper.from_array(
                    np.zeros(scale.shape if per_channel else (), dtype=np.int8), f"{key}.zero"
                ),
            ]
        )
        node = helper.make_node(
            "DequantizeLinear", [f"{key}.q", f"{key}.scale", f"{key}.zero"], [key]
        )
        if per_channel:
            node.attribute.append(helper.make_attribute("axis", axis))
        nodes.append(node)
    for i, node in enumerate(nodes):
        proto.graph.node.insert(i, node)
    return bytes(proto.SerializeToString())


def _transposed_weight(inits: dict[str, Any], layer: nn.Module) -> str | None:
    """The name of the float initializer holding ``layer.weight.T`` exactly, if any."""
    from onnx import TensorProto, numpy_helper

    if not isinstance(layer, nn.Linear):
        return None
    w_t = layer.weight.detach().float().numpy().T
    for name, init in inits.items():
        if (
            init.data_type == TensorProto.FLOAT
            and list(init.dims) == list(w_t.shape)
            and np.array_equal(numpy_helper.to_array(init), w_t)
        ):
            return name
    return None
