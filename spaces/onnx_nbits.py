"""Group-wise integer ``nn.Linear`` layers as ONNX Runtime's ``com.microsoft.MatMulNBits``.

``MatMulNBits`` (ONNX Runtime's contrib operator, CPU kernels in MLAS) multiplies a float
input by a weight stored block-wise along the input features: each output row's ``K``
weights in blocks of ``block_size`` codes, one float scale and one zero point a block,
dequantized as ``(u - zero_point) * scale``. That is exactly a group-wise layer of frontier
(``"g128"``, ``"g64"``, ``"g32"``: one scale per group of ``G`` consecutive weights of a row),
whose weight is ``codes * scale`` with symmetric signed codes: stored as ``u = code + 2^(b-1)``
with the operator's default zero point ``2^(b-1)`` (8 at 4 bits, 128 at 8 bits), the
dequantized weights are bit for bit frontier's (a small integer times a float16 scale is
exact in float32). Layers of at most 4 bits are stored at 4 bits (two codes a byte, the first
in the low nibble), 5 to 8 bits at 8 bits; a row whose length is not a multiple of ``G`` is
padded with code 0 (weight 0).

:func:`nbits_layers` says which layers qualify; :func:`nbits_export_model` gives a copy of a
model whose qualifying layers export as ``MatMulNBits`` with the legacy TorchScript exporter
(their forward hooks, e.g. 8-bit activation quantization, are kept); :func:`fold_bias` moves
each such layer's bias ``Add`` into the operator's ``bias`` input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MethodType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaces.layers import compressible_layers
from spaces.quantization import QuantizedWeight, weight_codes

#: The operator's domain and name.
DOMAIN = "com.microsoft"
OP = "MatMulNBits"


@dataclass(frozen=True)
class PackedNBits:
    """A layer's codes in ``MatMulNBits`` layout: ``data`` ``(N, k_blocks, blob)`` uint8,
    ``scales`` ``(N, k_blocks)`` float32."""

    data: np.ndarray
    scales: np.ndarray
    bits: int
    block_size: int
    k: int
    n: int


def storage_bits(bits: int) -> int:
    """The ``MatMulNBits`` width holding ``bits``-bit codes: 4 up to 4 bits, else 8."""
    return 4 if bits <= 4 else 8


def nbits_codes(layer: nn.Module) -> QuantizedWeight | None:
    """``layer``'s codes if it runs as ``MatMulNBits``: a group-wise ``nn.Linear`` with
    several groups per row (one group a row is a per-channel layer, see
    :func:`spaces.deploy.kernel_codes`) and a power-of-two group of at least 16."""
    if not isinstance(layer, nn.Linear):
        return None
    code = weight_codes(layer)
    if code is None or code.group_size is None:
        return None
    g = code.group_size
    if g < 16 or g & (g - 1) or code.scale.dim() != 2 or code.scale.shape[1] < 2:
        return None
    return code


def nbits_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The layers of ``model`` that :func:`nbits_export_model` exports as ``MatMulNBits``."""
    return {
        name: layer
        for name, layer in compressible_layers(model).items()
        if isinstance(layer, nn.Linear) and nbits_codes(layer) is not None
    }


def pack(code: QuantizedWeight) -> PackedNBits:
    """``code`` (a group-wise ``(N, K)`` weight) in ``MatMulNBits`` layout."""
    if code.group_size is None or code.q.dim() != 2:
        raise ValueError("MatMulNBits packs group-wise 2-D weights only.")
    bits = storage_bits(code.bits)
    n, k = (int(d) for d in code.q.shape)
    g = code.group_size
    blocks = -(-k // g)
    q = np.zeros((n, blocks * g), dtype=np.int16)
    q[:, :k] = code.q.numpy()
    u: np.ndarray = (q + (1 << (bits - 1))).astype(np.uint8).reshape(n, blocks, g)
    if bits == 4:  # two codes a byte, the first in the low nibble
        u = (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)
    scales = code.scale.float().numpy().reshape(n, blocks).astype(np.float32)
    return PackedNBits(np.ascontiguousarray(u), scales, bits, g, k, n)


def unpack(packed: PackedNBits) -> np.ndarray:
    """The float32 ``(N, K)`` weight ``packed`` holds (its codes times its scales)."""
    u = packed.data.astype(np.int16)
    if packed.bits == 4:
        u = np.stack([u & 0xF, u >> 4], axis=-1).reshape(packed.n, -1, packed.block_size)
    codes = (u - (1 << (packed.bits - 1))).astype(np.float32)
    return (codes * packed.scales[..., None]).reshape(packed.n, -1)[:, : packed.k]


class _MatMulNBits(torch.autograd.Function):
    """``x @ weight.T`` in torch; ``MatMulNBits`` (without bias) when exported."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, packed: PackedNBits) -> Any:
        return F.linear(x, weight)

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, packed: PackedNBits) -> Any:
        data = g.op("Constant", value_t=torch.from_numpy(packed.data))
        scales = g.op("Constant", value_t=torch.from_numpy(packed.scales))
        out = g.op(
            f"{DOMAIN}::{OP}",
            x,
            data,
            scales,
            K_i=packed.k,
            N_i=packed.n,
            bits_i=packed.bits,
            block_size_i=packed.block_size,
        )
        sizes = x.type().varyingSizes()  # the output type, for the exporter's shape inference
        if sizes is not None:
            out.setType(x.type().with_sizes([*sizes[:-1], packed.n]))
        return out


def _nbits_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _MatMulNBits.apply(x, self.weight, self._nbits)
    return out if self.bias is None else out + self.bias


def nbits_export_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose :func:`nbits_layers` export as ``MatMulNBits``.

    Only the export changes: the copy computes what ``model`` computes, and each layer keeps
    its hooks (activation quantization) around the operator.
    """
    out = copy.deepcopy(model).eval()
    for layer in nbits_layers(out).values():
        code = nbits_codes(layer)
        if code is None:  # pragma: no cover - nbits_layers checked it
            continue
        layer._nbits = pack(code)  # type: ignore[assignment]
        layer.forward = MethodType(_nbits_forward, layer)  # type: ignore[method-assign]
    return out


def finish(proto: Any) -> None:
    """Tidy the exported ``MatMulNBits`` nodes of ``proto`` (in place).

    Their packed codes and scales become initializers (the exporter writes ``Constant``
    nodes), and the ``Add`` of a constant ``[N]`` bias after a node, where the node's output
    feeds that ``Add`` alone, moves into the operator's ``bias`` input.
    """
    graph = proto.graph
    _constants_to_initializers(graph)
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in [n for n in graph.node if n.op_type == OP and n.domain == DOMAIN]:
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        other = [name for name in add.input if name != node.output[0]]
        n = next(a.i for a in node.attribute if a.name == "N")
        if len(other) != 1 or other[0] not in inits or list(inits[other[0]].dims) != [n]:
            continue
        node.input.extend(["", "", other[0]])
        node.output[0] = add.output[0]
        graph.node.remove(add)


def _constants_to_initializers(graph: Any) -> None:
    wanted = {
        name for n in graph.node if n.op_type == OP and n.domain == DOMAIN for name in n.input[1:3]
    }
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] in wanted]:
        tensor = next(a.t for a in node.attribute if a.name == "value")
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)
