"""``dcls``: Dilated Convolution with Learnable Spacings as a training-time form of one dense convolution.

Each filter (output channel x input channel of its group) holds ``kernel_count`` weights at learnable
real-valued positions inside a ``dilated_kernel_size`` window; interpolation (``gauss`` with a learnable spread
per tap and axis, or ``bilinear``) spreads them onto the window's cells (Khalfaoui-Hassani et al., ICLR 2023;
"beyond bilinear interpolation", 2023). The kernel math lives in ``dcls_kernel``; ``collapse()`` is a plain conv
holding that dense kernel.

Geometry: the constructor takes the *replaced* conv's arguments (kernel size, stride, padding, dilation), which
fix the output shape. The window replaces the replaced conv's effective kernel ``e = d (k - 1) + 1``; per axis
the collapsed conv has kernel ``S`` (the window) and symmetric padding ``(P + S - e) / 2`` (``P`` the replaced
conv's total padding), so every input size and stride gives the replaced conv's output size and the window is
centred where the replaced kernel was. When ``P + S - e`` is odd (an even window over an odd kernel, say) no
symmetric padding of an ``S`` kernel keeps the shape, so the collapsed kernel is ``S + 1`` with one zero row or
column beyond the window. Non-square windows (a pair) are supported; the search samples square odd ones.
Reflect and circular padding must fit in the input map, which the operator does not see: a window whose collapsed
padding exceeds the replaced conv's (the one padding known to fit) is ineligible for them.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .base import ConvOperator, ConvSpec, ParamSpec, conv2d, conv_bias_init_, kaiming_uniform_, make_conv
from .dcls_kernel import INTERPOLATIONS, KernelShape, build_kernel, window_origin
from .registry import register

# torch.fx records the kernel construction as one call (symbolic tracing cannot unpack its per-axis profiles).
torch.fx.wrap("build_kernel")

# Raw spread at initialization: sigma = 0.23 + 0.27 = 0.5 cell, the reference package's starting width.
INITIAL_SPREAD = 0.23
# Taps start near the window origin, N(0, 0.5) cells, as the reference package initializes them.
INITIAL_POSITION_STD = 0.5
# Padding modes whose padding must fit in the input map (reflect: under its size, circular: up to it).
BOUNDED_PADDING = ("reflect", "circular")


@dataclass(frozen=True)
class AxisPlacement:
    """Where the window sits along one axis of the collapsed kernel, and where the replaced taps fall in it."""

    collapsed_size: int  # S or S + 1
    padding: int  # each side
    window_start: int  # first collapsed cell covered by the window (0 or 1)
    first_tap: int  # window cell of the replaced conv's first tap; the others follow every `dilation` cells


def place_axis(
    window: int, kernel: int, dilation: int, pad_before: int, pad_after: int
) -> AxisPlacement | str:
    """Collapsed size, padding and window placement along one axis, or why the window cannot replace the kernel.

    With collapsed size ``C`` and symmetric padding ``p`` the output length is ``(L + 2p - C) // s + 1``; the
    replaced conv's is ``(L + P - e) // s + 1``, so ``2p = P + C - e`` must be even and non-negative.
    """
    extent = dilation * (kernel - 1)  # e - 1
    total = pad_before + pad_after
    size = window if (total + window - 1 - extent) % 2 == 0 else window + 1
    padding = (total + size - 1 - extent) // 2
    first = padding - pad_before  # collapsed cell of the replaced conv's first tap
    starts = [s for s in range(size - window + 1) if first - s >= 0 and first + extent - s <= window - 1]
    if padding < 0 or not starts:
        return f"the window ({window}) cannot hold the replaced kernel, whose taps span {extent + 1} cells"
    # Prefer the placement that puts the replaced kernel's centre nearest the window origin (position 0).
    start = min(starts, key=lambda s: abs(first + extent / 2 - s - window_origin(window)))
    return AxisPlacement(size, padding, start, first - start)


def _window(value: int | tuple[int, ...]) -> tuple[int, int]:
    window = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(window) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in window):
        raise ValueError(f"dilated_kernel_size must be a positive int or a pair of them, got {value!r}")
    return (int(window[0]), int(window[1]))


def _placements(spec: ConvSpec, window: tuple[int, int]) -> tuple[AxisPlacement, AxisPlacement] | str:
    left, right, top, bottom = spec.padding
    rows = place_axis(window[0], spec.kernel_size[0], spec.dilation[0], top, bottom)
    cols = place_axis(window[1], spec.kernel_size[1], spec.dilation[1], left, right)
    for axis, placed, pads in (("height", rows, (top, bottom)), ("width", cols, (left, right))):
        if isinstance(placed, str):
            return f"along the {axis}, {placed}"
        if spec.padding_mode in BOUNDED_PADDING and placed.padding > max(pads):
            return (
                f"along the {axis}, the collapsed conv's {spec.padding_mode} padding ({placed.padding}) exceeds the "
                f"replaced conv's ({max(pads)}): it must fit in the input map, which is known only to hold the "
                "replaced padding (use a window no wider than the replaced kernel)"
            )
    return rows, cols  # type: ignore[return-value]


@register
class DclsConv2d(ConvOperator):
    """Dilated convolution with learnable spacings: ``kernel_count`` taps per filter at learnable positions.

    Parameters: ``weight`` (O, I/groups, K), ``positions`` (2, O, I/groups, K) row and column offsets (cells)
    from the window origin ``size // 2``, clamped to the window in the forward pass (a tap pushed past the
    border stays on it and its position gets no gradient there), ``spreads`` (2, O, I/groups, K) for gauss
    (``sigma = |spread| + 0.27`` per axis), ``bias`` (O).
    """

    name = "dcls"
    summary = "dilated conv with learnable spacings: taps at learnable positions in a window (gauss/bilinear)"
    params = (
        ParamSpec("kernel_count", "int", 9, low=1, high=64, help="taps per filter (out x in/groups)"),
        ParamSpec(
            "dilated_kernel_size", "int", 7, low=3, high=31, step=2, help="window side the taps move in"
        ),
        ParamSpec("interpolation", "categorical", "gauss", choices=INTERPOLATIONS, help="tap -> cells"),
    )
    example_params = (
        {"kernel_count": 4, "dilated_kernel_size": 5, "interpolation": "gauss"},
        {"kernel_count": 10, "dilated_kernel_size": 4, "interpolation": "bilinear"},
        {"kernel_count": 9, "dilated_kernel_size": 6, "interpolation": "gauss"},
    )

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
        kernel_count: int = 9,
        dilated_kernel_size: int | tuple[int, int] = 7,
        interpolation: str = "gauss",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        reason = self.eligibility(
            self.spec,
            kernel_count=kernel_count,
            dilated_kernel_size=dilated_kernel_size,
            interpolation=interpolation,
        )
        if reason is not None:
            raise ValueError(f"dcls: {reason}")
        self.kernel_count = int(kernel_count)
        self.window = _window(dilated_kernel_size)
        self.interpolation = interpolation
        placement = _placements(self.spec, self.window)
        assert not isinstance(placement, str)  # eligibility checked it
        self.placement = placement
        rows, cols = placement
        self._collapsed = self.spec.with_(
            kernel_size=(rows.collapsed_size, cols.collapsed_size),
            padding=(cols.padding, cols.padding, rows.padding, rows.padding),
            dilation=(1, 1),
        )
        # Zero margin (left, right, top, bottom) around the window inside the collapsed kernel (F.pad order).
        self._margin = (
            cols.window_start,
            cols.collapsed_size - self.window[1] - cols.window_start,
            rows.window_start,
            rows.collapsed_size - self.window[0] - rows.window_start,
        )
        s = self.spec
        shape = (s.out_channels, s.in_channels // s.groups, self.kernel_count)
        self._shape = KernelShape(*shape, *self.window)
        self.weight = nn.Parameter(torch.empty(shape))
        self.positions = nn.Parameter(torch.empty(2, *shape))
        self.spreads = (
            nn.Parameter(torch.full((2, *shape), INITIAL_SPREAD)) if interpolation == "gauss" else None
        )
        self.bias = nn.Parameter(torch.empty(s.out_channels)) if s.bias else None
        # Cell coordinates 0 .. max(H, W) - 1 the interpolation evaluates at (moves with .to(device, dtype)).
        self.register_buffer("grid", torch.arange(max(self.window), dtype=torch.float32), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's initialization over the K taps; positions N(0, 0.5) around the window centre."""
        kaiming_uniform_(self.weight)  # fan_in = in/groups * K
        with torch.no_grad():
            self.positions.normal_(0.0, INITIAL_POSITION_STD)
        if self.bias is not None:
            conv_bias_init_(self.bias, self.weight[0].numel())

    @classmethod
    def eligibility(cls, spec: ConvSpec, **params: Any) -> str | None:
        values = {**cls.param_defaults(), **params}
        unknown = set(values) - {p.name for p in cls.params}
        if unknown:
            return f"unknown parameters {sorted(unknown)} (known: {[p.name for p in cls.params]})"
        count = values["kernel_count"]
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            return f"kernel_count must be a positive integer, got {count!r}"
        if values["interpolation"] not in INTERPOLATIONS:
            return f"interpolation must be one of {list(INTERPOLATIONS)}, got {values['interpolation']!r}"
        try:
            window = _window(values["dilated_kernel_size"])
        except (TypeError, ValueError) as error:
            return str(error)
        placed = _placements(spec, window)
        return placed if isinstance(placed, str) else None

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        """Taps on the replaced kernel's grid cells with its weights (the ``K`` largest by magnitude when
        ``K`` is smaller than the kernel; extra taps keep their random positions with weight 0). Bilinear is
        then exactly the replaced conv; gauss is it blurred by the initial spread."""
        device, dtype = self.weight.device, self.weight.dtype
        geometry = zip(self.placement, self.window, self.spec.kernel_size, self.spec.dilation)
        offsets = [  # the replaced taps' row and column offsets from the window origin
            placed.first_tap
            - window_origin(size)
            + dilation * torch.arange(kernel, device=device, dtype=dtype)
            for placed, size, kernel, dilation in geometry
        ]
        grid_rows, grid_cols = (t.flatten() for t in torch.meshgrid(*offsets, indexing="ij"))  # (kh*kw,)
        flat = conv.weight.reshape(*conv.weight.shape[:2], -1).to(dtype)  # (O, I/g, kh*kw)
        taps = min(self.kernel_count, flat.shape[-1])
        chosen = flat.abs().topk(taps, dim=-1).indices  # (O, I/g, taps)
        self.weight.zero_()
        self.weight[..., :taps] = flat.gather(-1, chosen)
        self.positions[0, ..., :taps] = grid_rows[chosen]
        self.positions[1, ..., :taps] = grid_cols[chosen]
        if self.bias is not None:
            self.bias.copy_(conv.bias)

    def dense_kernel(self) -> torch.Tensor:
        """The collapsed conv's weight (O, I/groups, kh', kw'): the window's kernel plus any zero margin (built once
        for inference, see ``derived``)."""
        sources = (self.weight, self.positions, self.spreads, self.grid)
        return self.derived(
            "kernel", lambda: self._pad(build_kernel(*sources, self.interpolation, self._shape)), *sources
        )

    def _pad(self, kernel: torch.Tensor) -> torch.Tensor:
        return F.pad(kernel, self._margin) if any(self._margin) else kernel  # a copy even when all zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return conv2d(x, self.dense_kernel(), self.bias, self._collapsed)

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():
            return make_conv(self._collapsed, self.dense_kernel(), self.bias)

    def collapsed_spec(self) -> ConvSpec:
        return self._collapsed

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, kernel_count={self.kernel_count}, dilated_kernel_size={self.window}, "
            f"interpolation={self.interpolation!r}, collapsed_kernel={self._collapsed.kernel_size}"
        )
