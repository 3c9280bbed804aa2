"""``large_kernel``: UniRepLKNet's dilated reparam block as a training-time form of one KxK convolution.

Training: a KxK kernel plus parallel small kernels ``k_i`` at dilations ``r_i``, each branch followed by its own
BatchNorm, outputs summed (Ding et al. 2024, "UniRepLKNet", Dilated Reparam Block). For K > 17 the block is
RepLKNet's: the KxK kernel plus one 5x5 branch (Ding et al. 2022, "Scaling Up Your Kernels to 31x31").

Deployment (``collapse``): fold every BN into its branch, ``W' = W * gamma / sqrt(var + eps)``,
``b' = beta - mean * gamma / sqrt(var + eps)``; expand a dilated ``k x k`` kernel at dilation ``r`` to the dense
``r(k-1)+1`` kernel with the weights at every ``r``-th tap; zero-pad each to KxK (centred); sum kernels and biases.

Geometry: the collapsed conv has kernel K, dilation 1 and, per axis, padding ``p + (K - e) / 2`` where ``p`` is
the replaced conv's padding and ``e = d(k-1)+1`` its effective kernel, so every input size gives the replaced
conv's output size and the receptive field stays centred where the replaced conv's was.

Initialization from a conv (``from_conv``): the block starts as the replaced conv, as ``conv_lora`` does (its
``B`` starts at zero): the conv's kernel sits in the KxK centre and every small branch's BN scale is zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_parameters
from .params import ParamSpec
from .registry import register
from .spec import ConvSpec

# UniRepLKNet's (kernel, dilation) pairs of the parallel branches for each large kernel K (Ding et al. 2024).
UNIREPLKNET_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    5: ((3, 1), (3, 2)),
    7: ((5, 1), (3, 2), (3, 3)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}
REPLKNET_SMALL_KERNEL = 5  # RepLKNet: one parallel 5x5 branch beside the large kernel (Ding et al. 2022)
LARGEST_KERNEL = 31
SUPPORTED_KERNELS = tuple(range(5, LARGEST_KERNEL + 1, 2))


def branch_table(large_kernel_size: int) -> tuple[tuple[int, int], ...]:
    """The (kernel, dilation) pairs of the small parallel branches for a KxK block (UniRepLKNet / RepLKNet)."""
    if large_kernel_size in UNIREPLKNET_BRANCHES:
        return UNIREPLKNET_BRANCHES[large_kernel_size]
    if large_kernel_size in SUPPORTED_KERNELS:
        return ((REPLKNET_SMALL_KERNEL, 1),)
    raise ValueError(
        f"large_kernel_size must be an odd integer in [5, {LARGEST_KERNEL}], got {large_kernel_size!r}"
    )


def effective_kernel(kernel_size: int, dilation: int) -> int:
    """The span of a dilated kernel: ``d (k - 1) + 1``."""
    return dilation * (kernel_size - 1) + 1


def dilate_kernel(weight: torch.Tensor, dilation: int | tuple[int, int]) -> torch.Tensor:
    """(O, I, kh, kw) at dilation (dh, dw) -> the equivalent dense (O, I, dh(kh-1)+1, dw(kw-1)+1) kernel.

    The taps land on every ``d``-th position; the positions between them are zeros.
    """
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    if (dh, dw) == (1, 1):
        return weight
    out_channels, in_per_group, kh, kw = weight.shape
    dense = weight.new_zeros(out_channels, in_per_group, effective_kernel(kh, dh), effective_kernel(kw, dw))
    dense[:, :, ::dh, ::dw] = weight
    return dense


def fold_batch_norm(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv (no bias) followed by eval-mode BN -> one conv: ``(W * gamma / std, beta - mean * gamma / std)``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (O,)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _centre_pad(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad an odd (O, I, e, e) kernel to (O, I, size, size), centred."""
    margin = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (margin, margin, margin, margin))


@register
class LargeKernelConv2d(ConvOperator):
    """Dilated reparam block (UniRepLKNet) in place of a stride-1 conv; collapses to one KxK ``nn.Conv2d``.

    ``large_kernel_size`` K (odd, 5..31) picks the branch table; ``allow_dense=True`` permits dense (groups=1)
    convs, which are ineligible by default (the block is designed for depthwise convs, and a dense KxK conv
    costs K^2/k^2 times the replaced one). The BatchNorms supply the bias, so the collapsed conv always has one.
    ``from_conv`` starts as the replaced conv in eval mode: its kernel in the KxK centre, its bias as that branch's
    BN shift, and every other branch behind a BN scale of zero (in training mode those branches add exactly zero
    too, while the KxK branch is batch-normalized).
    """

    name = "large_kernel"
    summary = "UniRepLKNet dilated reparam block: KxK kernel + dilated small kernels, BN per branch"
    params = (
        ParamSpec(
            "large_kernel_size",
            "int",
            13,
            low=5,
            high=LARGEST_KERNEL,
            step=2,
            help="K of the collapsed KxK kernel; 5..17 UniRepLKNet branches, 19..31 RepLKNet (K + 5x5)",
        ),
        ParamSpec("allow_dense", "bool", False, help="also replace dense (groups=1) convs"),
    )
    example_params = (
        {"large_kernel_size": 5},
        {"large_kernel_size": 7, "allow_dense": True},
    )

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        *,
        large_kernel_size: int = 13,
        allow_dense: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        reason = self.eligibility(self.spec, large_kernel_size=large_kernel_size, allow_dense=allow_dense)
        if reason is not None:
            raise ValueError(f"large_kernel: {reason}")
        s = self.spec
        self.large_kernel_size = int(large_kernel_size)
        self.allow_dense = bool(allow_dense)
        # (kernel, dilation) of every branch; branch 0 is the KxK kernel itself.
        self.branches: tuple[tuple[int, int], ...] = (
            (self.large_kernel_size, 1),
            *branch_table(large_kernel_size),
        )
        self.weights = nn.ParameterList(conv_parameters(s, (k, k), bias=False)[0] for k, _ in self.branches)
        self.norms = nn.ModuleList(nn.BatchNorm2d(s.out_channels) for _ in self.branches)
        self._padding = self._large_padding(s, self.large_kernel_size)  # (pad_h, pad_w) of the KxK conv
        # Per branch, how far its span sits inside the KxK window (its crop of the KxK-padded input).
        self._margins = [(self.large_kernel_size - effective_kernel(k, r)) // 2 for k, r in self.branches]
        # Zero padding can be given to each conv directly when no branch would need a negative padding.
        self._direct = s.padding_mode == "zeros" and all(
            min(self._padding) - margin >= 0 for margin in self._margins
        )

    # -- eligibility and geometry ----------------------------------------------------------------------------
    @classmethod
    def eligibility(
        cls, spec: ConvSpec, large_kernel_size: int = 13, allow_dense: bool = False
    ) -> str | None:
        if large_kernel_size not in SUPPORTED_KERNELS:
            return f"large_kernel_size must be an odd integer in [5, {LARGEST_KERNEL}], got {large_kernel_size!r}"
        if spec.stride != (1, 1):
            return f"stride {spec.stride}: the dilated reparam block replaces stride-1 convs only"
        if spec.padding_mode in ("reflect", "circular"):
            return (
                f"padding_mode {spec.padding_mode!r}: the KxK padding would exceed small inputs, so the output "
                "shape could not match the replaced conv's for every input size (zeros and replicate can)"
            )
        if spec.groups == 1 and not allow_dense:
            return "dense conv (groups=1): the block is for depthwise or grouped convs; pass allow_dense=True"
        spans = [effective_kernel(k, d) for k, d in zip(spec.kernel_size, spec.dilation)]
        if any(span % 2 == 0 for span in spans):
            return f"even effective kernel {tuple(spans)}: a KxK kernel cannot be centred on it"
        if max(spans) > large_kernel_size:
            return f"effective kernel {tuple(spans)} is larger than large_kernel_size {large_kernel_size}"
        if spec.symmetric_padding is None:
            return f"asymmetric padding {spec.padding}"
        return None

    @staticmethod
    def _large_padding(spec: ConvSpec, large_kernel_size: int) -> tuple[int, int]:
        """Per-axis padding of the KxK conv giving the replaced conv's output size, centred on its taps."""
        pad_h, pad_w = spec.symmetric_padding  # type: ignore[misc]
        span_h, span_w = (effective_kernel(k, d) for k, d in zip(spec.kernel_size, spec.dilation))
        return pad_h + (large_kernel_size - span_h) // 2, pad_w + (large_kernel_size - span_w) // 2

    def collapsed_bias(self) -> bool:
        return True  # the folded BatchNorms always leave a bias

    def collapsed_spec(self) -> ConvSpec:
        pad_h, pad_w = self._padding
        size = self.large_kernel_size
        return self.spec.with_(
            kernel_size=(size, size), padding=(pad_w, pad_w, pad_h, pad_h), dilation=(1, 1), bias=True
        )

    # -- weights ---------------------------------------------------------------------------------------------
    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        """Start as the replaced conv: the KxK kernel's centre holds the conv's (dilated) kernel, zeros around, and
        its BN scale is ``sqrt(running_var + eps)`` so that in eval it passes the conv's output through unscaled;
        the conv's bias becomes that BN's shift. Every other branch keeps its random kernel behind a BN scale of
        zero, so it adds nothing until training moves the scale (the small-kernel form of zero-initializing
        LoRA's B). The collapsed conv is then the replaced conv, padded to KxK."""
        dense = dilate_kernel(conv.weight, conv.dilation)  # (O, I/g, e_h, e_w)
        size = self.large_kernel_size
        top, left = (size - dense.shape[-2]) // 2, (size - dense.shape[-1]) // 2
        large = self.weights[0]
        large.zero_()
        large[:, :, top : top + dense.shape[-2], left : left + dense.shape[-1]] = dense
        first, *others = self.norms
        first.weight.copy_(torch.sqrt(first.running_var + first.eps))
        first.bias.zero_()
        if conv.bias is not None:
            first.bias.copy_(conv.bias)
        for norm in others:
            norm.weight.zero_()
            norm.bias.zero_()

    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The collapsed (O, I/groups, K, K) kernel and (O,) bias: fold BN, dilate to dense, centre-pad, sum."""
        size = self.large_kernel_size
        total_weight, total_bias = None, None
        for (_, dilation), weight, norm in zip(self.branches, self.weights, self.norms):
            folded, bias = fold_batch_norm(weight, norm)
            dense = _centre_pad(dilate_kernel(folded, dilation), size)  # (O, I/g, K, K)
            total_weight = dense if total_weight is None else total_weight + dense
            total_bias = bias if total_bias is None else total_bias + bias
        return total_weight, total_bias  # type: ignore[return-value]

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():
            weight, bias = self.fused_kernel()
            return make_conv(self.collapsed_spec(), weight, bias)

    # -- training-time forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        if not self.training and not torch.is_grad_enabled() and self._folds_exactly():
            return self._inference_forward(x)
        s = self.spec
        pad_h, pad_w = self._padding
        if not self._direct:
            mode = "constant" if s.padding_mode == "zeros" else s.padding_mode
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)  # (N, C_in, H + 2 pad_h, W + 2 pad_w)
        out = None
        for (_, dilation), margin, weight, norm in zip(
            self.branches, self._margins, self.weights, self.norms
        ):
            if self._direct:  # zero padding of this branch = the KxK padding less its margin
                y = F.conv2d(x, weight, None, 1, (pad_h - margin, pad_w - margin), dilation, s.groups)
            else:  # crop the KxK-padded input to this branch's window
                inner = (
                    x if margin == 0 else x[:, :, margin : x.shape[2] - margin, margin : x.shape[3] - margin]
                )
                y = F.conv2d(inner, weight, None, 1, 0, dilation, s.groups)
            y = norm(y)  # (N, C_out, H', W')
            out = y if out is None else out + y
        return out  # type: ignore[return-value]

    def _folds_exactly(self) -> bool:
        """Eval-mode BatchNorms with running statistics: the block is exactly its collapsed conv."""
        return all(norm.running_mean is not None and not norm.training for norm in self.norms)

    def _inference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the collapsed conv, its kernel and bias kept until a weight or BN statistic changes."""
        sources = [*self.weights]
        for norm in self.norms:
            sources += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
        weight, bias = self.derived("fused", self.fused_kernel, *sources)
        return conv2d(x, weight, bias, self.collapsed_spec())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, large_kernel_size={self.large_kernel_size}, branches={self.branches}"
