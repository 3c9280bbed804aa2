"""``orthogonal``: an orthogonal convolution where one exists exactly, an orthogonality regularizer elsewhere.

Two modes, chosen by the ``mode`` parameter (``auto`` picks ``exact`` whenever it is eligible, else ``soft``):

* ``exact``: the kernel is the BCOP construction (Li et al. 2019; ``orthogonal_bcop``), so the *circular* conv
  operator is orthogonal (row-orthogonal when out < in, column-orthogonal when out > in, per group) for every
  input size; ``conv_singular_values`` measures it. Orthogonal convolutions exist for stride 1 at any channel
  counts (Achour et al. 2022, "Existence, Stability and Scalability of Orthogonal CNNs"); this construction
  covers stride 1 with any dilation and groups, and needs the layer to *be* a circular operator: padding_mode
  'circular' with size-preserving padding, or a 1x1 kernel without padding. Under zero/reflect/replicate padding
  the same kernel gives a 1-Lipschitz but not orthogonal operator, so ``exact`` is refused there rather than
  claimed. With one channel per group an orthogonal conv is a signed shift, which leaves nothing to learn, so
  that is refused too. Strided exact constructions are not implemented.
* ``soft``: a plain kernel trained with ``regularizer_weight * orthogonality_loss`` through ``extra_loss()``
  (Wang et al. 2020, "Orthogonal Convolutional Neural Networks", ``||Conv(K, K, stride) - I_r0||_F^2``;
  column-orthogonal correction of Achour et al. 2022). ``deviation()`` reports how far from orthogonal it is.

``from_conv``: soft mode copies the conv's weight and bias. Exact mode copies the bias and sets ``H`` to the
nearest (row/column-)orthogonal matrix to the conv's DC gain ``sum_{a,b} W[:, :, a, b]`` (its polar factor), which
is then the operator's DC gain exactly (every BCOP block is the identity at frequency 0); the projectors start
random. The collapsed conv is the materialized kernel; the exact mode's training parameters are
``groups * (c^2 + (k_h + k_w - 2) * c * floor(c / 2))`` with ``c = max(in, out) / groups``, plus the bias.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_bias_init_, conv_parameters, copy_conv_
from .orthogonal_bcop import bcop_kernel
from .orthogonal_spectrum import conv_singular_values, orthogonality_loss
from .params import ParamSpec
from .registry import register
from .spec import ConvSpec

MODES = ("auto", "exact", "soft")


def exact_ineligibility(spec: ConvSpec) -> str | None:
    """Why the exact (BCOP) construction cannot make this conv an orthogonal operator, or None."""
    problems = []
    if spec.stride != (1, 1):
        problems.append(f"stride is {spec.stride} (the exact construction needs stride 1)")
    left, right, top, bottom = spec.padding
    size_preserving = (top + bottom, left + right) == tuple(
        d * (k - 1) for d, k in zip(spec.dilation, spec.kernel_size)
    )
    unpadded_pointwise = spec.kernel_size == (1, 1) and not any(spec.padding)
    if not (unpadded_pointwise or (spec.padding_mode == "circular" and size_preserving)):
        problems.append(
            f"padding_mode={spec.padding_mode!r} with padding {spec.padding} is not a circular operator "
            "(needs padding_mode='circular' with size-preserving padding, or a 1x1 kernel without padding; "
            "under zero padding a BCOP kernel is only 1-Lipschitz, not orthogonal)"
        )
    if max(spec.in_channels, spec.out_channels) // spec.groups < 2:
        problems.append("one channel per group (an orthogonal conv is then a signed shift: nothing to learn)")
    if not problems:
        return None
    return "exact orthogonality impossible here: " + "; ".join(problems) + "; use mode 'soft' or 'auto'"


def _polar_head(dc_gain: torch.Tensor, channels: int) -> torch.Tensor:
    """(G, out, in) -> (G, c, c) orthogonal whose top-left (out x in) block is the polar factor of ``dc_gain``.

    The polar factor ``U V^T`` of the zero-padded square matrix: its first ``out`` rows (out < in) or ``in``
    columns (out > in) are the (row/column-)orthogonal matrix nearest to ``dc_gain`` in Frobenius norm.
    """
    groups, out_channels, in_channels = dc_gain.shape
    square = dc_gain.new_zeros(groups, channels, channels)
    square[:, :out_channels, :in_channels] = dc_gain
    left, _, right_t = torch.linalg.svd(square)  # (G, c, c), (G, c), (G, c, c)
    return left @ right_t


@register
class OrthogonalConv2d(ConvOperator):
    """An orthogonal conv (``exact``, BCOP) or a conv with an orthogonality regularizer (``soft``)."""

    name = "orthogonal"
    summary = "orthogonal kernel (BCOP) where one exists exactly, orthogonality regularizer otherwise"
    params = (
        ParamSpec(
            "mode",
            "categorical",
            "auto",
            choices=MODES,
            help="exact: BCOP orthogonal kernel (stride 1, circular operator); soft: Wang et al. regularizer; "
            "auto: exact where eligible, else soft",
        ),
        ParamSpec(
            "regularizer_weight",
            "float",
            0.01,
            low=1e-4,
            high=1.0,
            log=True,
            help="soft mode: weight of the orthogonality loss returned by extra_loss()",
        ),
    )
    example_params = ({}, {"mode": "exact"}, {"mode": "soft", "regularizer_weight": 0.1})

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        mode: str = "auto",
        regularizer_weight: float = 0.01,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        checked = self.validate_params(dict(mode=mode, regularizer_weight=regularizer_weight))
        self.requested_mode: str = checked["mode"]
        self.mode: str = self.resolve_mode(self.spec, self.requested_mode)
        self.regularizer_weight: float = checked["regularizer_weight"]
        s = self.spec
        self.in_per_group, self.out_per_group = s.in_channels // s.groups, s.out_channels // s.groups
        if self.mode == "exact":
            channels = max(self.in_per_group, self.out_per_group)
            blocks = s.kernel_size[0] + s.kernel_size[1] - 2
            self.head = nn.Parameter(torch.randn(s.groups, channels, channels))  # (G, c, c)
            frames = torch.randn(blocks, s.groups, channels, channels // 2) if blocks else None
            # (k_h + k_w - 2, G, c, floor(c / 2)); none for a 1x1 kernel
            self.projector_frames = nn.Parameter(frames) if frames is not None else None
            fan_in = self.in_per_group * s.kernel_size[0] * s.kernel_size[1]
            self.bias = nn.Parameter(conv_bias_init_(torch.empty(s.out_channels), fan_in)) if s.bias else None
        else:
            self.weight, self.bias = conv_parameters(s)

    # -- modes ---------------------------------------------------------------------------------------------
    @classmethod
    def resolve_mode(cls, spec: ConvSpec, mode: str = "auto") -> str:
        """The mode that applies: ``exact`` or ``soft``. ``exact`` on an ineligible conv raises ValueError."""
        reason = exact_ineligibility(spec)
        if mode == "exact" and reason is not None:
            raise ValueError(f"orthogonal: {reason}")
        if mode == "auto":
            return "soft" if reason is not None else "exact"
        return mode

    @classmethod
    def describe_mode(cls, spec: ConvSpec, mode: str = "auto") -> str:
        """One line saying which mode applies to ``spec`` and why (``auto`` resolved)."""
        reason = exact_ineligibility(spec)
        if mode == "exact" and reason is not None:
            return f"ineligible: {reason}"
        resolved = cls.resolve_mode(spec, mode)
        if resolved == "exact":
            return "exact: BCOP kernel, the circular conv operator is (row/column-)orthogonal"
        why = "requested" if mode == "soft" else (reason or "")
        return f"soft: orthogonality regularizer in extra_loss(), deviation measured ({why})"

    @classmethod
    def eligibility(cls, spec: ConvSpec, **params: Any) -> str | None:
        mode = cls.validate_params(params).get("mode", "auto")
        return exact_ineligibility(spec) if mode == "exact" else None

    # -- weights -------------------------------------------------------------------------------------------
    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        if self.mode == "soft":
            copy_conv_(self.weight, self.bias, conv)
            return
        if self.bias is not None:
            self.bias.copy_(conv.bias)
        s = self.spec
        dc_gain = conv.weight.sum(dim=(-2, -1)).reshape(s.groups, self.out_per_group, self.in_per_group)
        self.head.copy_(_polar_head(dc_gain, self.head.shape[-1]))

    def kernel(self) -> torch.Tensor:
        """The conv kernel, (out, in / groups, k_h, k_w): materialized BCOP (exact) or the plain weight (soft)."""
        if self.mode == "soft":
            return self.weight
        return bcop_kernel(
            self.head, self.projector_frames, self.spec.kernel_size, self.out_per_group, self.in_per_group
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return conv2d(x, self.kernel(), self.bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():
            return make_conv(self.spec, self.kernel(), self.bias)

    # -- orthogonality -------------------------------------------------------------------------------------
    def orthogonality_loss(self) -> torch.Tensor:
        """Wang et al. (2020) conv-orthogonality loss of the current kernel (Achour et al. correction), a scalar."""
        s = self.spec
        return orthogonality_loss(self.kernel(), s.stride, s.dilation, s.groups)

    def extra_loss(self) -> torch.Tensor | None:
        if self.mode == "exact":
            return None
        return self.regularizer_weight * self.orthogonality_loss()

    def default_measure_size(self) -> tuple[int, int]:
        """The grid ``deviation()`` uses by default: at least 16 and the dilated kernel, a multiple of the stride."""
        s = self.spec
        sizes = []
        for kernel, dilation, stride in zip(s.kernel_size, s.dilation, s.stride):
            size = max(16, dilation * (kernel - 1) + 1)
            sizes.append(-(-size // stride) * stride)
        return sizes[0], sizes[1]

    def singular_values(self, input_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Every singular value of the circular conv operator with the current kernel on ``input_size``."""
        s = self.spec
        with torch.no_grad():
            return conv_singular_values(
                self.kernel(), input_size or self.default_measure_size(), s.stride, s.dilation, s.groups
            )

    def deviation(self, input_size: tuple[int, int] | None = None) -> float:
        """Measured deviation from orthogonality: ``max |sigma - 1|`` over the circular operator's singular values."""
        return (self.singular_values(input_size) - 1).abs().max().item()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"
