"""The packed artifact: a safetensors file whose length *is* the candidate's size.

Layout. Every compressible layer's weight is one ``U8`` tensor holding, in order:
``[scales (float16)] [sparsity index] [values]``. The scales are one per output channel, one
per layer, or, for group-wise layers, one per (row, group) in row-major order (see
:mod:`spaces.quantization`). Values are the integer codes bit-packed at the layer's width
(offset by ``qmax`` so they are unsigned), or raw float16 / float32 bytes for 16- and 32-bit
layers. Each weight uses whichever of three encodings is smallest:

- ``dense``: every value;
- ``bitmask``: one bit per position (set where the weight is non-zero), then the non-zero values;
- ``relidx``: Deep Compression's relative indices: for each non-zero, the gap to the previous
  one in ``k`` bits (``k`` chosen per layer), with a zero-valued filler entry whenever a gap
  exceeds ``2**k``; then the values of all entries.

Biases of layers at 16 bits or fewer are stored as float16 (the evaluated model uses the same
rounded values); everything else in the state dict (biases of float layers, BatchNorm
statistics, the ``act_qparams`` activation ranges of 8-bit-activation layers, ...) is stored as
is. A structurally pruned layer is simply stored at its smaller shape. The safetensors
metadata holds one compact JSON record per weight (shape, bits, encoding, counts, and the
group size ``g`` of a group-wise layer) and the student's name: everything needed to decode,
nothing more. The header counts toward the size.

Versions: an artifact with a group-wise layer is format 2 (a reader of format 1 would misread
its scales, so it refuses it); every other artifact is still written as format 1, byte for
byte as before group-wise scales existed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from spaces.layers import compressible_layers
from spaces.quantization import QuantizedWeight, qmax

FORMAT_VERSION = 2
#: The format of artifacts without group-wise layers (still written for them, unchanged).
_UNGROUPED_VERSION = 1
_READABLE_VERSIONS = (1, 2)
_META_KEY = "frontier"


# ---------------------------------------------------------------- bit packing


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned integers (each < 2**width) into ``width`` bits each, little-endian."""
    values = np.asarray(values, dtype=np.uint32).ravel()
    if values.size == 0:
        return b""
    if 8 % width == 0:  # 1, 2, 4 or 8 bits: whole values per byte, the first in the low bits
        per = 8 // width
        padded = np.zeros(-(-values.size // per) * per, dtype=np.uint8)
        padded[: values.size] = values
        lanes = padded.reshape(-1, per) << (np.arange(per, dtype=np.uint8) * width)
        return np.bitwise_or.reduce(lanes, axis=1).astype(np.uint8).tobytes()
    bits = ((values[:, None] >> np.arange(width, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def unpack_bits(data: bytes | np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` unsigned integers of ``width`` bits."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    if 8 % width == 0:  # whole values per byte (see pack_bits)
        per = 8 // width
        shifts = np.arange(per, dtype=np.uint8) * width
        lanes = (raw[: -(-count // per), None] >> shifts) & np.uint8(2**width - 1)
        return lanes.ravel()[:count].astype(np.int64)
    bits = np.unpackbits(raw, count=count * width, bitorder="little").reshape(count, width)
    return (bits.astype(np.int64) << np.arange(width, dtype=np.int64)).sum(axis=1)


def _nbytes(count: int, width: int) -> int:
    return math.ceil(count * width / 8)


# ---------------------------------------------------------------- encodings


@dataclass(frozen=True)
class _Values:
    """The values of one weight in storage form, flattened."""

    bits: int
    flat: np.ndarray  # int codes (offset, unsigned) for bits <= 8; float array otherwise
    zero: float | int  # the stored form of an exact zero

    def encode(self, v: np.ndarray) -> bytes:
        if self.bits <= 8:
            return pack_bits(v, self.bits)
        dtype = np.float16 if self.bits == 16 else np.float32
        return np.asarray(v, dtype=dtype).tobytes()

    def decode(self, data: bytes, count: int) -> np.ndarray:
        if self.bits <= 8:
            return unpack_bits(data, self.bits, count)
        dtype = np.float16 if self.bits == 16 else np.float32
        return np.frombuffer(data, dtype=dtype, count=count).astype(np.float32)

    def nbytes(self, count: int) -> int:
        return _nbytes(count, self.bits) if self.bits <= 8 else count * (self.bits // 8)


def _relidx_entries(positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaps (minus one) of each entry and the index into ``positions`` (-1 for a filler)."""
    span = 2**k
    gaps = np.diff(np.concatenate([[-1], positions]))
    per = -(-gaps // span)  # entries each non-zero needs: fillers + itself
    owner = np.repeat(np.arange(len(positions)), per)
    # within each run of entries, every filler advances `span`; the last takes the remainder
    last = np.cumsum(per) - 1
    diffs = np.full(int(per.sum()), span, dtype=np.int64)
    diffs[last] = gaps - (per - 1) * span
    is_real = np.zeros(len(diffs), dtype=bool)
    is_real[last] = True
    return diffs - 1, np.where(is_real, owner, -1)


def _relidx_size(gaps: np.ndarray, k: int, values: _Values) -> int:
    count = int((-(-gaps // 2**k)).sum())
    return _nbytes(count, k) + values.nbytes(count)


def _encode_weight(values: _Values, numel: int) -> tuple[str, int, int, bytes]:
    """Choose the smallest encoding; returns (name, entry count, k, payload)."""
    nz = np.flatnonzero(values.flat != values.zero)
    options: list[tuple[int, str, int]] = [(values.nbytes(numel), "dense", 0)]
    options.append((_nbytes(numel, 1) + values.nbytes(len(nz)), "bitmask", 0))
    if len(nz):
        gaps = np.diff(nz, prepend=-1)
        for k in range(1, 9):
            # at least one entry per non-zero: a k whose least size cannot win is skipped
            # (dense weights: every k), which gives the same choice as sizing them all
            if _nbytes(len(nz), k) + values.nbytes(len(nz)) <= min(options)[0]:
                options.append((_relidx_size(gaps, k, values), "relidx", k))
    _, enc, k = min(options)
    if enc == "dense":
        return enc, numel, 0, values.encode(values.flat)
    if enc == "bitmask":
        mask = np.zeros(numel, dtype=np.uint8)
        mask[nz] = 1
        payload = np.packbits(mask, bitorder="little").tobytes() + values.encode(values.flat[nz])
        return enc, len(nz), 0, payload
    diffs, owner = _relidx_entries(nz, k)
    vals = np.where(owner >= 0, values.flat[nz][np.maximum(owner, 0)], values.zero)
    return enc, len(diffs), k, pack_bits(diffs, k) + values.encode(vals)


def _decode_weight(values: _Values, enc: str, count: int, k: int, numel: int, data: bytes) -> Any:
    flat = np.full(numel, values.zero, dtype=np.float32 if values.bits > 8 else np.int64)
    if enc == "dense":
        flat[:] = values.decode(data, numel)
    elif enc == "bitmask":
        mbytes = _nbytes(numel, 1)
        mask = np.unpackbits(np.frombuffer(data[:mbytes], np.uint8), count=numel, bitorder="little")
        flat[mask.astype(bool)] = values.decode(data[mbytes:], count)
    elif enc == "relidx":
        ibytes = _nbytes(count, k)
        positions = np.cumsum(unpack_bits(data[:ibytes], k, count) + 1) - 1
        flat[positions] = values.decode(data[ibytes:], count)
    else:
        raise ValueError(f"Unknown weight encoding {enc!r} in artifact.")
    return flat


# ---------------------------------------------------------------- pack / unpack


@dataclass(frozen=True)
class Artifact:
    """A decoded artifact: the state dict it rebuilds and the student it belongs to.

    ``codes`` holds the integer codes and scales of every layer stored at 8 bits or fewer,
    keyed by layer name (what the int8 runtimes and the ONNX export compute with).
    """

    state_dict: dict[str, torch.Tensor]
    student: str
    layers: dict[str, dict[str, Any]]
    codes: dict[str, QuantizedWeight] = field(default_factory=dict)


def pack(
    model: nn.Module,
    codes: Mapping[str, QuantizedWeight],
    bits: Mapping[str, int],
    *,
    student: str,
) -> bytes:
    """Serialise a compressed model to its packed safetensors bytes.

    Args:
        model: The compressed model, whose weights are exactly the evaluated ones.
        codes: Integer codes of each layer quantized to 8 bits or fewer.
        bits: Bit width of every compressible layer (32 when missing).
        student: Name of the model's architecture, stored so the artifact can be rebuilt.
    """
    layers = compressible_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    records: dict[str, dict[str, Any]] = {}
    for key, tensor in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if owner in layers and leaf == "weight":
            blob, rec = _pack_weight(tensor.detach(), codes.get(owner), bits.get(owner, 32))
            tensors[key] = (
                torch.frombuffer(bytearray(blob), dtype=torch.uint8)
                if blob
                else (torch.zeros(0, dtype=torch.uint8))
            )
            records[key] = rec
        elif owner in layers and leaf == "bias" and bits.get(owner, 32) <= 16:
            tensors[key] = tensor.detach().half().contiguous()
        else:
            tensors[key] = tensor.detach().contiguous()
    grouped = any("g" in rec for rec in records.values())
    version = FORMAT_VERSION if grouped else _UNGROUPED_VERSION
    meta = {"v": version, "student": student, "layers": records}
    return bytes(st_save(tensors, metadata={_META_KEY: json.dumps(meta, separators=(",", ":"))}))


def _pack_weight(
    w: torch.Tensor, code: QuantizedWeight | None, bits: int
) -> tuple[bytes, dict[str, Any]]:
    shape = list(w.shape)
    numel = w.numel()
    head = b""
    if bits <= 8:
        if code is None or code.bits != bits:
            raise ValueError(f"A {bits}-bit layer needs its integer codes to be packed.")
        m = qmax(bits)
        values = _Values(bits, code.q.flatten().numpy().astype(np.int64) + m, m)
        head = code.scale.half().numpy().tobytes()
        n_scales = code.scale.numel()
    else:
        dtype = np.float16 if bits == 16 else np.float32
        values = _Values(bits, w.flatten().numpy().astype(dtype), 0.0)
        n_scales = 0
    enc, count, k, payload = _encode_weight(values, numel)
    rec = {"shape": shape, "bits": bits, "enc": enc, "n": count, "k": k, "s": n_scales}
    if code is not None and code.group_size is not None:
        rec["g"] = code.group_size
    return head + payload, rec


def unpack(data: bytes) -> Artifact:
    """Decode packed bytes back to the exact float state dict that was evaluated."""
    try:
        meta = json.loads(_read_metadata(data)[_META_KEY])
    except (KeyError, ValueError) as exc:
        raise ValueError("Not a frontier artifact: its metadata has no layout.") from exc
    if meta.get("v") not in _READABLE_VERSIONS:
        raise ValueError(
            f"Artifact format {meta.get('v')} is not supported "
            f"(this reads {list(_READABLE_VERSIONS)})."
        )
    raw = st_load(data)
    state: dict[str, torch.Tensor] = {}
    codes: dict[str, QuantizedWeight] = {}
    for key, tensor in raw.items():
        rec = meta["layers"].get(key)
        if rec is None:
            state[key] = tensor.float() if tensor.dtype == torch.float16 else tensor
            continue
        weight, code = _unpack_weight(tensor.numpy().tobytes(), rec)
        state[key] = weight
        if code is not None:
            codes[key.rpartition(".")[0]] = code
    return Artifact(state_dict=state, student=meta["student"], layers=meta["layers"], codes=codes)


def _unpack_weight(
    blob: bytes, rec: Mapping[str, Any]
) -> tuple[torch.Tensor, QuantizedWeight | None]:
    shape, bits, numel = rec["shape"], rec["bits"], math.prod(rec["shape"])
    n_scales = rec["s"]
    scale = np.frombuffer(blob[: 2 * n_scales], dtype=np.float16)
    body = blob[2 * n_scales :]
    if bits <= 8:
        m = qmax(bits)
        flat = _decode_weight(
            _Values(bits, np.zeros(0), m), rec["enc"], rec["n"], rec["k"], numel, body
        )
        group = rec.get("g")
        scales = torch.from_numpy(scale.copy())
        if group is not None:
            scales = scales.reshape(shape[0] if len(shape) > 1 else 1, -1)
        code = QuantizedWeight(
            q=torch.from_numpy((flat - m).astype(np.int8)).reshape(shape),
            scale=scales,
            bits=bits,
            group_size=group,
        )
        return code.dequantize(), code
    flat = _decode_weight(
        _Values(bits, np.zeros(0), 0.0), rec["enc"], rec["n"], rec["k"], numel, body
    )
    return torch.from_numpy(np.asarray(flat, dtype=np.float32)).reshape(shape), None


def _read_metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return dict(header.get("__metadata__", {}))
