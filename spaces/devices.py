"""Where training and evaluation run: the study's ``device`` setting, resolved and applied.

``study.device`` is ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``,
``"cuda"`` or ``"cuda:N"``. Teacher training, distillation, recovery fine-tuning, GPTQ
calibration, sensitivity and accuracy run there; everything that is kept (state dicts in the
weight cache, packed artifacts, ONNX exports) is made from CPU copies, so cached weights are
the same whichever device trained them and their cache keys do not name it.

The helpers move a model to the device for one piece of work and back to where it was
(:func:`on_device`), and move batches there (:func:`to_device`). Where the device is the one
the model is already on (always the case on a CPU-only machine), they do nothing at all, so
CPU results are bit for bit those of a study without the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "DEVICE_CHOICES",
    "check_device_name",
    "device_of",
    "on_device",
    "resolve_device",
    "to_device",
    "use_device",
]

#: The values ``study.device`` takes, as error messages list them.
DEVICE_CHOICES = ('"auto"', '"cpu"', '"cuda"', '"cuda:N"')
_FORM = re.compile(r"auto|cpu|cuda|cuda:\d+")


def check_device_name(name: object, *, key: str = "study.device") -> str:
    """``name`` if it has one of the forms of :data:`DEVICE_CHOICES`; a ValueError otherwise.

    Only the form is checked here: whether this machine has the GPU is checked where the
    device is used (:func:`resolve_device`), so a study run on a GPU machine can still be
    read (status, report) on one without.
    """
    if not isinstance(name, str) or not _FORM.fullmatch(name):
        raise ValueError(
            f"'{key}' must be one of {', '.join(DEVICE_CHOICES)}. Got {name!r} instead."
        )
    return name


def resolve_device(name: str, *, key: str = "study.device") -> torch.device:
    """The ``torch.device`` that ``name`` means on this machine.

    Raises:
        ValueError: ``name`` has no valid form, or names a CUDA device this machine lacks
            (the message names ``key`` and what to set instead).
    """
    check_device_name(name, key=key)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"'{key}' is {name!r} but torch sees no CUDA GPU on this machine; "
                'set it to "auto" or "cpu".'
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"'{key}' is {name!r} but this machine has {count} CUDA GPU(s) "
                f"(cuda:0 to cuda:{count - 1}); set an index below {count}."
            )
    return device


def use_device(device: torch.device) -> None:
    """Set torch up for work on ``device``: on CUDA, float32 convolutions and matrix products
    in full float32 (no TF32), as on the CPU.

    cuDNN convolutions default to TF32 (10-bit mantissa): a teacher's outputs, a fidelity
    metric's reference and the candidates scored against it would differ by about 1e-3
    relative between devices, where float32 differs by about 1e-6. Nothing changes for the CPU.
    """
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with none."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _same(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are the same device (``cuda`` is ``cuda:<current>``)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


@contextmanager
def on_device(model: nn.Module, device: torch.device | None) -> Iterator[nn.Module]:
    """``model`` moved to ``device`` for the block, then back to where it was.

    ``None``, or the device the model is already on, moves nothing. The move is in place
    (``Module.to``): parameters keep their identity, so an optimizer made inside the block
    and a caller's references to the parameters stay valid.
    """
    home = device_of(model)
    if device is None or _same(home, device):
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)


def to_device(
    tensors: tuple[torch.Tensor, ...], device: torch.device | None
) -> tuple[torch.Tensor, ...]:
    """``tensors`` on ``device`` (the same tensor objects when they are already there)."""
    if device is None:
        return tensors
    return tuple(t.to(device) for t in tensors)
