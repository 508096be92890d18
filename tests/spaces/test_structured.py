from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from evaluators.tasks.digits import DigitsCNN, DigitsMLP
from spaces.structured import prunable_groups, prune_channels, removed_count
from spaces.task import Split


class TinyResNet(nn.Module):
    """A stem, one residual block (BatchNorm, addition), a concatenation and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.bna = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        self.c = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = h + torch.relu(self.bna(self.a(h)))  # residual addition couples stem and a
        h = torch.cat([self.b(h), self.c(h)], dim=1)  # concatenation feeds the head
        return self.head(h.mean(dim=(2, 3)))


def _model() -> TinyResNet:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (model.bn, model.bna):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


X = (torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)),)


def test_groups_couple_residual_partners_and_leave_the_classifier_alone() -> None:
    groups = prunable_groups(_model(), X)
    assert groups == {"stem": ["stem", "a"], "b": ["b"], "c": ["c"]}
    assert "head" not in groups  # the output size is fixed
    assert list(prunable_groups(DigitsCNN(), (torch.zeros(1, 1, 8, 8),))) == [
        "conv1",
        "conv2",
        "fc1",
    ]
    assert list(prunable_groups(DigitsMLP(), (torch.zeros(1, 64),))) == ["fc1", "fc2"]


def test_ratio_zero_leaves_the_model_unchanged() -> None:
    model = _model()
    pruned = copy.deepcopy(model)
    assert prune_channels(pruned, {"stem": 0.0, "b": 0.0}, X) == {}
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), pruned.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    with torch.no_grad():
        assert torch.equal(model(*X), pruned(*X))


def _kill_channels(model: TinyResNet, dead: list[int], dead_b: list[int]) -> None:
    """Make channels contribute nothing anywhere, so their importance is zero."""
    with torch.no_grad():
        for conv, bn in ((model.stem, model.bn), (model.a, model.bna)):
            conv.weight[dead] = 0
            conv.bias[dead] = 0  # type: ignore[index]
            bn.weight[dead] = 0
            bn.bias[dead] = 0
        for consumer in (model.a, model.b, model.c):
            consumer.weight[:, dead] = 0
        model.b.weight[dead_b] = 0
        model.b.bias[dead_b] = 0  # type: ignore[index]
        model.head.weight[:, dead_b] = 0


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_ratio_r_removes_the_least_important_channels_in_every_coupled_layer(
    importance: str,
) -> None:
    model = _model()
    _kill_channels(model, dead=[2, 5], dead_b=[1, 3])
    pruned = copy.deepcopy(model)
    kept = prune_channels(pruned, {"stem": 0.25, "b": 0.5}, X, importance=importance)
    assert kept == {"stem": 6, "b": 2}
    # the residual group: both convolutions, both BatchNorms and every consumer shrink
    assert pruned.stem.out_channels == pruned.a.out_channels == 6
    assert pruned.bn.num_features == pruned.bna.num_features == 6
    assert pruned.a.in_channels == pruned.b.in_channels == pruned.c.in_channels == 6
    # the concatenation: the head loses exactly b's removed inputs
    assert pruned.b.out_channels == 2 and pruned.c.out_channels == 4
    assert pruned.head.in_features == 6 and pruned.head.out_features == 10
    alive = [i for i in range(8) if i not in (2, 5)]
    assert torch.equal(pruned.stem.weight, model.stem.weight[alive])
    assert torch.equal(pruned.bn.running_mean, model.bn.running_mean[alive])
    assert torch.equal(pruned.head.weight, model.head.weight[:, [0, 2, 4, 5, 6, 7]])
    with torch.no_grad():  # only dead channels went: the function is the same
        torch.testing.assert_close(pruned(*X), model(*X), rtol=0, atol=1e-6)


def test_pruned_residual_cnn_runs_forward_and_backward() -> None:
    model = _model().train()
    prune_channels(model, {"stem": 0.5, "b": 0.5, "c": 0.25}, X)
    out = model(torch.randn(8, 1, 8, 8))
    loss = nn.functional.cross_entropy(out, torch.arange(8))
    loss.backward()
    assert out.shape == (8, 10)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in _model().parameters()
    )


def test_removed_count_rounds_and_always_keeps_a_channel() -> None:
    assert removed_count(8, 0.25) == 2
    assert removed_count(10, 0.33) == 3
    assert removed_count(4, 0.99) == 3
    assert removed_count(1, 0.5) == 0
    with pytest.raises(ValueError, match=r"range \[0, 1\)"):
        removed_count(8, 1.0)


def test_unknown_importance_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'space\.channel_importance' must be one of"):
        prune_channels(_model(), {"stem": 0.5}, X, importance="taylor")


class TinyTransformerBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm1 = nn.LayerNorm(16)
        self.ff1 = nn.Linear(16, 32)
        self.ff2 = nn.Linear(32, 16)
        self.norm2 = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm1(h + a)
        h = self.norm2(h + self.ff2(torch.relu(self.ff1(h))))
        return self.head(h.mean(dim=1))


def test_ffn_width_of_a_transformer_block_shrinks_and_attention_stays_whole() -> None:
    torch.manual_seed(0)
    model = TinyTransformerBlock().eval()
    x = (torch.randn(2, 5, 8),)
    groups = prunable_groups(model, x)
    # the FFN width is free; the residual stream feeding attention is not offered (its heads
    # and the additions fix it), rather than pruned into a broken model
    assert groups == {"ff1": ["ff1"]}
    assert prune_channels(model, {"ff1": 0.5, "embed": 0.5}, x) == {"ff1": 16}
    assert model.ff1.out_features == model.ff2.in_features == 16
    assert model.attn.embed_dim == 16
    assert model(*x).shape == (2, 3)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def test_bias_correction_keeps_the_next_layers_mean_output_on_the_calibration_rows() -> None:
    model = _mlp()
    x = torch.randn(200, 6) + 0.5
    rows = Split((x,), torch.zeros(200))
    with torch.no_grad():
        mean_before = model(x).mean(dim=0)
    corrected, plain = copy.deepcopy(model), copy.deepcopy(model)
    prune_channels(corrected, {"0": 0.5}, (x[:1],), calibration=rows, batch_size=64)
    prune_channels(plain, {"0": 0.5}, (x[:1],))
    assert corrected[0].out_features == plain[0].out_features == 8
    with torch.no_grad():
        assert torch.allclose(corrected(x).mean(dim=0), mean_before, atol=1e-5)
        assert not torch.allclose(plain(x).mean(dim=0), mean_before, atol=1e-3)
        # only the bias of the layer reading the removed neurons moved
        assert torch.equal(corrected[2].weight, plain[2].weight)
        assert torch.equal(corrected[0].bias, plain[0].bias)


def test_bias_correction_lowers_the_error_of_a_pruned_cnn_on_held_out_rows() -> None:
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    x = torch.rand(300, 1, 8, 8)
    calibration, held_out = Split((x[:200],), torch.zeros(200)), x[200:]
    with torch.no_grad():
        reference = model(held_out)
    errors = {}
    for name, rows in (("corrected", calibration), ("plain", None)):
        pruned = copy.deepcopy(model)
        prune_channels(pruned, {"conv1": 0.5}, (x[:1],), calibration=rows)
        with torch.no_grad():
            errors[name] = float((pruned(held_out) - reference).pow(2).mean())
    assert errors["corrected"] < 0.8 * errors["plain"]
