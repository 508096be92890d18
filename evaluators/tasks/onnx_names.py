"""Names for the layers of a converted ONNX graph: stable, and usable in a study file.

A layer is named after its weight's initializer when that name is meaningful (PyTorch's
exporter keeps parameter names: ``layer1.0.conv1.weight`` gives ``layer1.0.conv1``, the name
the layer had in PyTorch), else after its node (``/features/features.3/Conv`` gives
``features.3``; Keras' ``sequential_1/dense_1/MatMul`` gives ``sequential_1.dense_1``), else
after its operator and position (``conv0``, ``matmul1``). Every part of a name is letters,
digits and ``_`` (anything else becomes ``_``); parts are joined with ``.`` into nested
modules, so ``[space.layers."layer1.0.conv1"]`` addresses one layer as for a PyTorch model.
The same graph always gives the same names.
"""

from __future__ import annotations

import re

from torch import nn

#: Initializer names PyTorch and converters generate (not the user's names).
_GENERATED = re.compile(
    r"^(onnx::|val_|_val_|const_|Constant|ortshared_|new_shape|_v_|StatefulPartitioned)"
    r"|ReadVariableOp|^\d+$|/Const(_\d+)?(:0)?$"
)
#: Trailing parts that name the parameter or the operator, not the layer.
_SUFFIX = re.compile(
    r"^(weight|kernel|w|bias|Conv\w*|Gemm\w*|MatMul\w*|MatMul_\d+|convolution\w*|BiasAdd\w*|"
    r"Tensordot\w*|ReadVariableOp\w*|transpose\w*|Reshape\w*|Cast\w*)$"
)
_BAD = re.compile(r"[^A-Za-z0-9_]")
_RESERVED = {"constants", "steps", "input_names", "output_name"}


def _parts(raw: str) -> list[str]:
    """A path split at ``/`` and ``.``, with the variable suffix ``:0`` dropped."""
    raw = re.sub(r":\d+$", "", raw.strip("/"))
    pieces = [p for p in raw.split("/") if p]
    # PyTorch scopes repeat their parent: /layer1/layer1.0/conv1 -> layer1.0.conv1
    kept: list[str] = []
    for p in pieces:
        if kept and p.startswith(kept[-1] + "."):
            kept[-1] = p
        else:
            kept.append(p)
    return [q for p in kept for q in p.split(".") if q]


def _clean(parts: list[str]) -> list[str]:
    while parts and _SUFFIX.match(parts[-1]) and len(parts) > 1:
        parts = parts[:-1]
    if len(parts) == 1 and _SUFFIX.match(parts[0]):
        return []
    return [_safe(_BAD.sub("_", p)) for p in parts]


def _safe(part: str) -> str:
    """A part that is no attribute of a module (``train``, ``forward``) nor of the converted
    module (``constants``, ``steps``)."""
    return f"{part}_" if hasattr(nn.Module, part) or part in _RESERVED else part


def _from_weight(initializer: str) -> list[str]:
    if not initializer or _GENERATED.search(initializer):
        return []
    return _clean(_parts(initializer))


def _from_node(node: str) -> list[str]:
    if not node or re.match(r"^(node_)?[A-Za-z]+(_\d+)?$", node):
        return []  # generated: "node_Conv_13", "Conv_0", "node_linear"
    return _clean(_parts(node))


class LayerNamer:
    """Gives each layer of one graph a distinct name (:func:`name`), in graph order."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._count: dict[str, int] = {}

    def name(self, initializer: str, node: str, op: str) -> str:
        """The name of the layer with weight ``initializer`` computed by ``node`` (``op``)."""
        parts = _from_weight(initializer) or _from_node(node)
        if not parts or parts[0][0].isdigit():
            k = self._count.get(op, 0)
            self._count[op] = k + 1
            parts = [f"{op.lower()}{k}", *parts] if parts else [f"{op.lower()}{k}"]
        name = ".".join(parts)
        if self._clashes(name):
            k = 2
            while self._clashes(f"{name}_{k}"):
                k += 1
            name = f"{name}_{k}"
        self._taken.add(name)
        return name

    def _clashes(self, name: str) -> bool:
        """Taken, or a prefix of / prefixed by a taken name (a layer cannot hold a layer)."""
        return any(
            t == name or t.startswith(name + ".") or name.startswith(t + ".") for t in self._taken
        )


def attach(root: nn.Module, name: str, layer: nn.Module) -> None:
    """Register ``layer`` under the dotted ``name``, creating plain container modules."""
    *path, leaf = name.split(".")
    parent = root
    for part in path:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, layer)
