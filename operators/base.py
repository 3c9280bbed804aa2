"""The operator contract: a training-time parameterization of one dense 2-D convolution.

Every operator takes ``nn.Conv2d``'s arguments plus keyword-only parameters of its own, keeps the replaced
conv's output shape, and in eval mode is mathematically one ``nn.Conv2d``: ``collapse()`` returns that conv
without mutating the operator. This module holds the base class; its parts live beside it, one concept each:
``spec`` (``ConvSpec``, the geometry), ``params`` (``ParamSpec``, the searchable parameters), ``functional``
(``conv2d``, ``make_conv``), ``init`` (``nn.Conv2d``'s initialization, copying a conv's weights) and ``derived``
(the inference cache). Their names are importable from here too. Imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .derived import Derived, DerivedCache
from .functional import conv2d, make_conv
from .init import conv_bias_init_, conv_parameters, copy_conv_, kaiming_uniform_
from .params import ParamSpec
from .spec import PADDING_MODES, ConvSpec

__all__ = [
    "PADDING_MODES",
    "ConvOperator",
    "ConvSpec",
    "Derived",
    "ParamSpec",
    "conv2d",
    "conv_bias_init_",
    "conv_parameters",
    "copy_conv_",
    "kaiming_uniform_",
    "make_conv",
]


class ConvOperator(nn.Module):
    """Base class of every operator.

    Subclasses set ``name``, ``summary`` and ``params`` (a tuple of ``ParamSpec``), implement ``forward`` and
    ``collapse``, and may override ``eligibility``, ``load_conv_weights``, ``extra_loss`` and ``collapsed_bias``.
    The constructor signature is ``nn.Conv2d``'s plus keyword-only operator parameters; subclasses call
    ``super().__init__(in_channels, ..., padding_mode)`` which stores the normalized geometry in ``self.spec``.
    A conv-shaped weight and bias are made with ``init.conv_parameters`` (``nn.Conv2d``'s initialization) and a
    replaced conv's copied with ``init.copy_conv_``; a kernel computed from parameters goes through ``derived``.
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
        """``build()``, a value computed from ``sources`` and the operator's settings (the effective kernel, a mask,
        a kernel and bias), kept for inference: in eval under ``no_grad`` an operator then runs its conv alone, as
        its collapsed form does. The key covers each source (identity, version, storage, dtype, device, layout),
        every plain attribute of the operator and its submodules (``training`` included) and inference mode; see
        ``operators.derived``. Never kept while autograd needs the graph, or while tracing or compiling."""
        cache = self.__dict__.get("_derived_cache")
        if cache is None:
            cache = self.__dict__["_derived_cache"] = DerivedCache()
        return cache.get(self, name, build, sources)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without the kept values (a copy builds its own)."""
        state = dict(super().__getstate__())
        state.pop("_derived_cache", None)
        return state

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
