"""The operator contract: a training-time parameterization of one dense 2-D convolution.

Every operator takes ``nn.Conv2d``'s arguments plus keyword-only parameters of its own, keeps the replaced
conv's output shape, and in eval mode is mathematically one ``nn.Conv2d``: ``collapse()`` returns that conv
without mutating the operator. This module imports torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

Derived = TypeVar("Derived")  # what ConvOperator.derived keeps: a tensor or a tuple of them

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _pair(value: int | tuple[int, ...], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvSpec:
    """The arguments of one 2-D convolution, normalized (pairs everywhere, padding resolved to ints)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (F.pad order)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"

    @staticmethod
    def create(
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> ConvSpec:
        """Validate and normalize ``nn.Conv2d``-style arguments."""
        kernel = _pair(kernel_size, "kernel_size")
        stride_ = _pair(stride, "stride")
        dilation_ = _pair(dilation, "dilation")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if isinstance(padding, str):
            if padding == "valid":
                pads = (0, 0, 0, 0)
            elif padding == "same":
                if stride_ != (1, 1):
                    raise ValueError("padding='same' is not supported for strided convolutions")
                pads = _same_padding(kernel, dilation_)
            else:
                raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
        else:
            ph, pw = _pair(padding, "padding")
            pads = (pw, pw, ph, ph)
        return ConvSpec(
            in_channels, out_channels, kernel, stride_, pads, dilation_, groups, bool(bias), padding_mode
        )

    @staticmethod
    def from_conv(conv: nn.Conv2d) -> ConvSpec:
        return ConvSpec.create(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
        )

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) when the padding is symmetric, else None."""
        left, right, top, bottom = self.padding
        return (top, left) if left == right and top == bottom else None

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.in_channels and self.groups > 1

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an input of ``height`` x ``width`` (nn.Conv2d's formula)."""
        left, right, top, bottom = self.padding
        out_h = (height + top + bottom - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[
            0
        ] + 1
        out_w = (width + left + right - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[
            1
        ] + 1
        return out_h, out_w

    def conv_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nn.Conv2d`` (or any operator) reproducing this spec."""
        padding: Any = self.symmetric_padding
        if padding is None:  # only 'same' with an even effective kernel gets here
            padding = "same"
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )

    def with_(self, **changes: Any) -> ConvSpec:
        return replace(self, **changes)


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """nn.Conv2d's 'same' padding: total d*(k-1), the extra pixel on the right/bottom."""
    pads = []
    for k, d in zip(reversed(kernel), reversed(dilation)):  # width first (F.pad order)
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec) -> torch.Tensor:
    """``nn.Conv2d``'s forward for a computed ``weight`` (out, in/groups, kh, kw) under ``spec``'s geometry."""
    symmetric = spec.symmetric_padding
    if spec.padding_mode == "zeros" and symmetric is not None:
        return F.conv2d(x, weight, bias, spec.stride, symmetric, spec.dilation, spec.groups)
    mode = "constant" if spec.padding_mode == "zeros" else spec.padding_mode
    x = F.pad(x, spec.padding, mode=mode)
    return F.conv2d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)


def make_conv(spec: ConvSpec, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with ``spec``'s geometry holding copies of ``weight`` and ``bias``."""
    kwargs = spec.conv_kwargs()
    kwargs["bias"] = bias is not None
    conv = nn.Conv2d(**kwargs, device=weight.device, dtype=weight.dtype)
    if tuple(conv.weight.shape) != tuple(weight.shape):
        raise ValueError(
            f"collapsed weight has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}"
        )
    with torch.no_grad():
        conv.weight.copy_(weight.detach())
        if bias is not None:
            conv.bias.copy_(bias.detach())
    return conv


@dataclass(frozen=True)
class ParamSpec:
    """One searchable operator parameter. The search turns it into an Optuna distribution.

    ``kind`` is ``int``, ``float``, ``categorical`` or ``bool``. Numeric kinds use ``low``/``high`` (inclusive),
    optionally ``log`` or ``step``; categorical uses ``choices``.
    """

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    step: float | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "categorical", "bool"):
            raise ValueError(f"ParamSpec {self.name}: unknown kind {self.kind!r}")
        if self.kind in ("int", "float") and (self.low is None or self.high is None):
            raise ValueError(f"ParamSpec {self.name}: numeric parameters need low and high")
        if self.kind == "categorical" and not self.choices:
            raise ValueError(f"ParamSpec {self.name}: categorical parameters need choices")

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ValueError naming the parameter."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError(f"{self.name} must be true or false, got {value!r}")
        if self.kind == "categorical":
            for choice in self.choices or ():
                if value == choice or str(value) == str(choice):
                    return choice
            raise ValueError(f"{self.name} must be one of {list(self.choices or ())}, got {value!r}")
        try:
            number = int(value) if self.kind == "int" else float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name} must be {'an integer' if self.kind == 'int' else 'a number'}, got {value!r}"
            ) from None
        if self.kind == "int" and isinstance(value, float) and not float(value).is_integer():
            raise ValueError(f"{self.name} must be an integer, got {value!r}")
        if not (self.low <= number <= self.high):  # type: ignore[operator]
            raise ValueError(f"{self.name} must be in [{self.low}, {self.high}], got {value!r}")
        return number

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "default": self.default}
        if self.kind in ("int", "float"):
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.kind == "categorical":
            out["choices"] = list(self.choices or ())
        if self.help:
            out["help"] = self.help
        return out


class ConvOperator(nn.Module):
    """Base class of every operator.

    Subclasses set ``name``, ``summary`` and ``params`` (a tuple of ``ParamSpec``), implement ``forward`` and
    ``collapse``, and may override ``eligibility``, ``load_conv_weights``, ``extra_loss`` and ``collapsed_bias``.
    The constructor signature is ``nn.Conv2d``'s plus keyword-only operator parameters; subclasses call
    ``super().__init__(in_channels, ..., padding_mode)`` which stores the normalized geometry in ``self.spec``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    # Parameter sets the contract tests (and `nas ops`) exercise; each is tried on every test geometry.
    example_params: ClassVar[tuple[dict[str, Any], ...]] = ({},)

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
    ) -> None:
        super().__init__()
        self.spec = ConvSpec.create(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )

    def derived(self, name: str, build: Callable[[], Derived], *sources: torch.Tensor | None) -> Derived:
        """``build()``, tensors computed from ``sources`` (the effective kernel, a mask, a kernel and bias), kept and
        reused while no source changes and no gradient flows to them: in eval under ``no_grad`` an operator then runs
        its conv alone, as its collapsed form does. Rebuilt when a source changes value (its version counter), storage,
        dtype or device; never kept while autograd needs the graph, or while tracing or compiling."""
        tensors = [t for t in sources if t is not None]
        if (
            any(isinstance(t, torch.fx.Proxy) for t in tensors)
            or torch.compiler.is_compiling()
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        ):
            return build()
        key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
        cache = self.__dict__.setdefault("_derived_cache", {})
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, build())
        return cache[name][1]

    # -- nn.Conv2d-like attributes, so code that inspects convs keeps working ------------------------------
    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def out_channels(self) -> int:
        return self.spec.out_channels

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.spec.kernel_size

    @property
    def stride(self) -> tuple[int, int]:
        return self.spec.stride

    @property
    def dilation(self) -> tuple[int, int]:
        return self.spec.dilation

    @property
    def groups(self) -> int:
        return self.spec.groups

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Coerce and range-check operator parameters; unknown names raise ValueError listing the known ones."""
        known = {p.name: p for p in cls.params}
        out = {}
        for key, value in params.items():
            if key not in known:
                names = ", ".join(known) or "none"
                raise ValueError(f"operator {cls.name!r} has no parameter {key!r} (known: {names})")
            out[key] = known[key].validate(value)
        return out

    @classmethod
    def eligibility(cls, spec: ConvSpec, **params: Any) -> str | None:
        """Why a conv with ``spec`` cannot be replaced by this operator with ``params``, or None if it can."""
        return None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **params: Any) -> ConvOperator:
        """Build the operator in place of ``conv``: same geometry, reusing its weights where the math allows."""
        spec = ConvSpec.from_conv(conv)
        reason = cls.eligibility(spec, **params)
        if reason is not None:
            raise ValueError(f"{cls.name}: cannot replace this conv: {reason}")
        op = cls(**spec.conv_kwargs(), **params)
        op.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            op.load_conv_weights(conv)
        return op

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        """Initialize from an existing conv's weights (called under no_grad by ``from_conv``). Default: nothing."""

    # -- training and deployment ---------------------------------------------------------------------------
    def extra_loss(self) -> torch.Tensor | None:
        """A regularizer the trainer adds to the loss (None when the operator has none)."""
        return None

    def collapse(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` equal to this operator's eval-mode output. Must not mutate ``self``."""
        raise NotImplementedError

    def collapsed_bias(self) -> bool:
        """Whether the collapsed conv has a bias (the cost model counts its additions). Default: as the spec."""
        return self.spec.bias

    def collapsed_spec(self) -> ConvSpec:
        """The geometry of ``collapse()``'s conv, known without building it (used by the cost model)."""
        return self.spec.with_(bias=self.collapsed_bias())

    def training_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        s = self.spec
        text = f"{s.in_channels}, {s.out_channels}, kernel_size={s.kernel_size}, stride={s.stride}"
        if any(s.padding):
            text += f", padding={s.padding}"
        if s.dilation != (1, 1):
            text += f", dilation={s.dilation}"
        if s.groups != 1:
            text += f", groups={s.groups}"
        if not s.bias:
            text += ", bias=False"
        if s.padding_mode != "zeros":
            text += f", padding_mode={s.padding_mode!r}"
        return text


def kaiming_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """``nn.Conv2d``'s default weight initialization."""
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def conv_bias_init_(bias: torch.Tensor, fan_in: int) -> torch.Tensor:
    """``nn.Conv2d``'s default bias initialization for a layer with ``fan_in`` inputs per output."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    return nn.init.uniform_(bias, -bound, bound)
