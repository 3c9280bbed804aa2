"""``weighted``: Weighted Convolution (Cammarasana and Patane, "Optimal Weighted Convolution for Classification
and Denoising").

The kernel is multiplied elementwise by a separable spatial density, ``W_eff = W * outer(a_h, a_w)`` with
``a = [d_1, ..., d_m, 1, d_m, ..., d_1]`` for a kernel of size ``2m + 1`` (the centre tap keeps weight 1).
Implemented from the paper's formula; no reference code was consulted.

Parameter schema (kernel-size independent, so one search space serves 3x3, 5x5 and 7x7 convs): the density is
given per *distance from the centre*: ``density`` weights the taps at distance 1 (the only value of a 3x3,
the paper's ``d``), ``density_2`` those at distance 2 (5x5 and up), ``density_3`` those at distance 3 (7x7).
In the paper's notation for ``2m + 1`` taps, ``d_{m+1-r} = density_r``. Values a kernel does not reach are
ignored. With ``learnable=True`` the densities are trained as parameters (initialized to the given values);
otherwise they are a buffer and the trainable parameter count equals the replaced conv's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_parameters, copy_conv_
from .params import ParamSpec
from .registry import register
from .spec import ConvSpec

MAX_RADIUS = 3  # density, density_2, density_3: kernels up to 7x7


@register
class WeightedConv2d(ConvOperator):
    """A conv whose kernel is weighted by the density ``outer(a, a)`` (Cammarasana and Patane)."""

    name = "weighted"
    summary = "kernel times a spatial density outer(a, a), a = [d..., 1, ...d] (searched, optionally learned)"
    params = (
        ParamSpec(
            "density", "float", 1.0, low=0.5, high=1.5, help="weight of the taps at distance 1 (3x3's d)"
        ),
        ParamSpec(
            "density_2", "float", 1.0, low=0.5, high=1.5, help="weight of the taps at distance 2 (5x5+)"
        ),
        ParamSpec(
            "density_3", "float", 1.0, low=0.5, high=1.5, help="weight of the taps at distance 3 (7x7)"
        ),
        ParamSpec("learnable", "bool", False, help="train the densities with the kernel"),
    )
    example_params = (
        {"density": 0.7, "density_2": 1.3},
        {"density": 1.2, "learnable": True},
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
        density: float = 1.0,
        density_2: float = 1.0,
        density_3: float = 1.0,
        learnable: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        reason = self.eligibility(self.spec)
        if reason is not None:
            raise ValueError(f"weighted: {reason}")
        s = self.spec
        self.weight, self.bias = conv_parameters(s)
        radius = max(s.kernel_size) // 2
        values = torch.tensor(
            [density, density_2, density_3][:radius], dtype=torch.get_default_dtype()
        )  # (m,)
        self.learnable = bool(learnable)
        if self.learnable:
            self.density = nn.Parameter(values)
        else:
            self.register_buffer("density", values)
        # Distance of each row / column tap from the centre, as indices into [1, d_1, ..., d_m].
        kh, kw = s.kernel_size
        self.register_buffer("_rows", (torch.arange(kh) - kh // 2).abs().reshape(kh, 1), persistent=False)
        self.register_buffer("_cols", (torch.arange(kw) - kw // 2).abs().reshape(1, kw), persistent=False)

    @classmethod
    def eligibility(cls, spec: ConvSpec, **params: object) -> str | None:
        kh, kw = spec.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            return f"even kernel {spec.kernel_size}: the density a = [d..., 1, ...d] needs a centre tap"
        if (kh, kw) == (1, 1):
            return "1x1 kernel: a spatial density has nothing to weight"
        if max(kh, kw) > 2 * MAX_RADIUS + 1:
            return f"kernel {spec.kernel_size}: densities are declared up to {2 * MAX_RADIUS + 1}x{2 * MAX_RADIUS + 1}"
        return None

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        """Reuse the conv's kernel and bias as ``W`` (the effective kernel is ``W * outer(a, a)``)."""
        copy_conv_(self.weight, self.bias, conv)

    def mask(self) -> torch.Tensor:
        """``outer(a_h, a_w)``, shape (kh, kw); a fixed density's mask is computed once (``derived``): a training step
        then costs one elementwise product more than a plain conv."""
        return self.derived("mask", self._compute_mask, self.density)

    def _compute_mask(self) -> torch.Tensor:
        levels = F.pad(self.density, (1, 0), value=1.0)  # (m + 1,): weight at distance 0..m
        return levels[self._rows] * levels[self._cols]  # (kh, 1) * (1, kw) -> (kh, kw)

    def effective_weight(self) -> torch.Tensor:
        return self.derived(
            "kernel", lambda: self.weight * self.mask(), self.weight, self.density
        )  # (O, I/g, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return conv2d(x, self.effective_weight(), self.bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():
            return make_conv(self.spec, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        values = ", ".join(f"{v:.4g}" for v in self.density.detach().tolist())
        return f"{super().extra_repr()}, density=[{values}], learnable={self.learnable}"
