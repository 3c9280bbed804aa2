"""BatchNorm folding: the formula by hand, exactness on a model, and every case that must be left alone."""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from nas.export import fold_batchnorm, folded_conv
from nas.graph import capture
from nas.models import build_model


def _randomize_statistics(module: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None:
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            if bn.affine:
                bn.weight.data.copy_(torch.randn(bn.num_features, generator=generator))
                bn.bias.data.copy_(torch.randn(bn.num_features, generator=generator))


def test_folded_conv_follows_the_formula_by_hand():
    conv = nn.Conv2d(1, 2, 1, bias=True)
    conv.weight.data = torch.tensor([[[[2.0]]], [[[-1.0]]]])
    conv.bias.data = torch.tensor([1.0, 0.5])
    bn = nn.BatchNorm2d(2, eps=0.0).eval()
    bn.running_mean.copy_(torch.tensor([3.0, -1.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    bn.weight.data = torch.tensor([0.5, 2.0])
    bn.bias.data = torch.tensor([1.0, -2.0])
    fused = folded_conv(conv, bn)
    # scale = gamma / sqrt(var + eps) = [0.25, 4]; w' = w * scale; b' = (b - mean) * scale + beta
    assert fused.weight.flatten().tolist() == [0.5, -4.0]
    assert fused.bias.tolist() == [(1.0 - 3.0) * 0.25 + 1.0, (0.5 + 1.0) * 4.0 - 2.0]
    assert conv.weight.flatten().tolist() == [2.0, -1.0]  # the original conv is untouched


def test_folded_conv_without_bias_or_affine_matches_eval_output():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    bn = nn.BatchNorm2d(8, affine=False)
    _randomize_statistics(bn)
    bn.eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(folded_conv(conv, bn)(x), bn(conv(x)), atol=1e-5)


def test_fold_batchnorm_on_a_captured_model_is_exact():
    torch.manual_seed(0)
    built = build_model("compact:ConvOps-S")
    module = capture(built.module, built.input_shape)
    _randomize_statistics(module)
    module.eval()
    x = torch.randn(3, *built.input_shape)
    with torch.no_grad():
        expected = module(x)
    folded = fold_batchnorm(module)
    assert len(folded) == 10 and "stem.conv" in folded
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert all(module.get_submodule(path).bias is not None for path in folded)
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-5)


class _Cases(nn.Module):
    """Convs and BatchNorms that must not be folded (and one pair that must)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(4, 4, 3, padding=1)  # called twice
        self.bn_shared = nn.BatchNorm2d(4)
        self.branch = nn.Conv2d(4, 4, 1)  # output read by the BN and by the add
        self.bn_branch = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.bn_after_relu = nn.BatchNorm2d(4)  # input is not a conv
        self.conv_batch_stats = nn.Conv2d(4, 4, 1)
        self.bn_batch_stats = nn.BatchNorm2d(4, track_running_stats=False)  # normalizes by batch statistics
        self.conv_ok = nn.Conv2d(4, 4, 1)
        self.bn_ok = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn_shared(self.shared(x)) + self.shared(x)
        z = self.branch(y)
        y = self.bn_branch(z) + z
        y = self.bn_after_relu(self.relu(y))
        y = self.bn_batch_stats(self.conv_batch_stats(y))
        return self.bn_ok(self.conv_ok(y))


def test_only_exact_folds_are_made():
    torch.manual_seed(0)
    model = _Cases()
    _randomize_statistics(model)
    module = fx.symbolic_trace(model).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expected = module(x)
    assert fold_batchnorm(module) == ["conv_ok"]
    kept = {name for name, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert kept == {"bn_shared", "bn_branch", "bn_after_relu", "bn_batch_stats"}
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-5)


def test_training_mode_batchnorm_is_left_alone():
    module = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    module.train()
    assert fold_batchnorm(module) == []
    module.eval()
    assert fold_batchnorm(module) == ["0"]


def test_conv_with_its_own_forward_is_left_alone():
    class StandardizedConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
            return self._conv_forward(x, weight, self.bias)

    model = nn.Sequential(StandardizedConv(3, 4, 3), nn.BatchNorm2d(4))
    module = capture(model, (3, 8, 8), leaf_modules=[StandardizedConv]).eval()
    assert [n.target for n in module.graph.nodes if n.op == "call_module"] == ["0", "1"]
    assert fold_batchnorm(module) == []
    plain = capture(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), (3, 8, 8)).eval()
    assert fold_batchnorm(plain) == ["0"]
