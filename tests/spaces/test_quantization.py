from __future__ import annotations

import pytest
import torch

from spaces.quantization import compute_scale, fake_quantize, qmax, quantize_weight


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
