from __future__ import annotations

import pytest
import torch

from spaces.quantization import (
    compute_scale,
    expand_scale,
    fake_quantize,
    mark_quantized,
    qmax,
    quantize_weight,
    scale_count,
    uses_mse_clipping,
    weight_codes,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("shape", [(16, 1, 3, 3), (64, 512), (10, 64)])
def test_quantized_weights_lie_on_grid_within_half_a_step(
    bits: int, shape: tuple[int, ...]
) -> None:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(bits)) * 0.3
    code = quantize_weight(w, bits)
    m = qmax(bits)
    assert code.q.dtype == torch.int8
    assert int(code.q.abs().max()) <= m
    assert code.scale.shape == (shape[0],)  # one scale per output channel
    step = code.scale.float().reshape(-1, *([1] * (len(shape) - 1)))
    deq = code.dequantize()
    # on the grid: every value is an integer multiple of its channel's step
    ratio = deq / step
    assert torch.allclose(ratio, ratio.round(), atol=1e-4)
    # round to nearest: error at most half a step (plus float rounding)
    assert bool(((deq - w).abs() <= step / 2 + 1e-6).all())


def test_per_channel_scales_follow_each_channels_range() -> None:
    w = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-0.01, 0.01, 9)])
    scale = compute_scale(w, 4)
    assert scale[0] > 50 * scale[1]
    assert torch.allclose(
        quantize_weight(w, 4).dequantize()[0, [0, -1]], torch.tensor([-1.0, 1.0]), atol=1e-3
    )


def test_zero_stays_zero_and_range_is_symmetric() -> None:
    w = torch.tensor([[0.0, 0.6, -0.6, 1.0, -1.0, 0.4]])
    q = quantize_weight(w, 2).q
    assert q.tolist() == [[0, 1, -1, 1, -1, 0]]


@pytest.mark.parametrize("bits", [3, 8, 16])
def test_fake_quantize_forward_matches_packed_values_and_passes_gradients(bits: int) -> None:
    w = (torch.randn(8, 20) * 0.1).requires_grad_()
    out = fake_quantize(w, bits)
    expected = quantize_weight(w, bits).dequantize() if bits <= 8 else w.detach().half().float()
    assert torch.equal(out.detach(), expected)
    out.sum().backward()
    assert w.grad is not None and torch.equal(w.grad, torch.ones_like(w))


def test_qmax_rejects_out_of_range_bits() -> None:
    with pytest.raises(ValueError, match="2 to 8 bits"):
        qmax(9)


# ---------------------------------------------------------------- group-wise scales


@pytest.mark.parametrize(("granularity", "g"), [("g128", 128), ("g64", 64), ("g32", 32)])
@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (10, 200), (4, 32)])
def test_group_scales_cover_consecutive_runs_of_each_flattened_row(
    granularity: str, g: int, shape: tuple[int, ...]
) -> None:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(g)) * 0.3
    code = quantize_weight(w, 8, granularity=granularity)  # 8 bits: absmax, checkable exactly
    out, k = shape[0], w[0].numel()
    n_groups = -(-k // g)  # the last group is shorter when g does not divide k
    assert code.group_size == g and code.scale.shape == (out, n_groups)
    assert scale_count(shape, granularity) == out * n_groups
    rows = w.reshape(out, k)  # PyTorch's order: a conv row is in_channels x kh x kw
    for j in range(n_groups):
        amax = rows[:, j * g : (j + 1) * g].abs().amax(dim=1)
        assert torch.equal(code.scale[:, j], (amax / qmax(8)).half())
    step = expand_scale(code.scale.float(), shape, g)
    assert bool(((code.dequantize() - w).abs() <= step / 2 + 1e-6).all())


def test_group_scales_beat_channel_scales_on_outlier_columns() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(32, 256, generator=gen) * 0.02
    w[:, :8] *= 50  # a few outlier input columns, as in transformer weights
    errors = {
        g: float((quantize_weight(w, 4, granularity=g).dequantize() - w).pow(2).sum())
        for g in ("channel", "g128", "g64", "g32")
    }
    # only the group holding the outliers pays for their range; the rest keep fine steps
    assert errors["g32"] <= errors["g64"] <= errors["g128"] < 0.7 * errors["channel"]
    assert errors["g32"] < 0.4 * errors["channel"]


@pytest.mark.parametrize("granularity", ["channel", "tensor", "g128", "g64", "g32"])
@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_mse_clipping_never_loses_to_absmax_and_keeps_zeros(granularity: str, bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(24, 3, 5, 5, generator=gen) * 0.1
    w[torch.rand(w.shape, generator=gen) < 0.4] = 0.0  # pruned weights
    w[3] = 0.0  # a whole pruned row
    mse = quantize_weight(w, bits, granularity=granularity, mse=True)
    absmax = quantize_weight(w, bits, granularity=granularity, mse=False)
    err_mse = float((mse.dequantize() - w).pow(2).sum())
    err_absmax = float((absmax.dequantize() - w).pow(2).sum())
    assert err_mse <= err_absmax
    assert bool((mse.q[w == 0] == 0).all()) and bool((mse.dequantize()[w == 0] == 0).all())


def test_mse_clipping_is_the_rule_below_8_bits_for_group_scales_only() -> None:
    assert uses_mse_clipping(4, "g64") and uses_mse_clipping(7, "g32")
    assert not uses_mse_clipping(8, "g64")  # int8 stays absmax
    assert not uses_mse_clipping(4, "channel") and not uses_mse_clipping(4, "tensor")
    w = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    for bits, granularity in [(4, "g64"), (8, "g64"), (4, "channel")]:
        rule = uses_mse_clipping(bits, granularity)
        assert torch.equal(
            quantize_weight(w, bits, granularity=granularity).scale,
            quantize_weight(w, bits, granularity=granularity, mse=rule).scale,
        )
    clipped = quantize_weight(w, 4, granularity="g64")
    assert not torch.equal(clipped.scale, quantize_weight(w, 4, granularity="g64", mse=False).scale)


@pytest.mark.parametrize("granularity", ["g128", "g64", "g32"])
@pytest.mark.parametrize("bits", [3, 8])
def test_group_fake_quantize_matches_the_codes_and_passes_gradients(
    granularity: str, bits: int
) -> None:
    w = (torch.randn(6, 4, 3, 3) * 0.1).requires_grad_()
    out = fake_quantize(w, bits, granularity=granularity)
    assert torch.equal(out.detach(), quantize_weight(w, bits, granularity=granularity).dequantize())
    out.sum().backward()
    assert w.grad is not None and torch.equal(w.grad, torch.ones_like(w))


@pytest.mark.parametrize("granularity", ["channel", "tensor", "g64", "g32"])
def test_marked_layer_gives_its_codes_and_scales_back_exactly(granularity: str) -> None:
    layer = torch.nn.Conv2d(5, 7, 3)
    code = quantize_weight(layer.weight, 4, granularity=granularity)
    with torch.no_grad():
        layer.weight.copy_(code.dequantize())
    mark_quantized(layer, code)
    back = weight_codes(layer)
    assert back is not None and back.group_size == code.group_size and back.bits == 4
    assert torch.equal(back.q, code.q) and torch.equal(back.scale, code.scale)


def test_unknown_granularity_is_refused() -> None:
    with pytest.raises(ValueError, match="'granularity' must be one of"):
        quantize_weight(torch.ones(2, 3), 4, granularity="g16")
