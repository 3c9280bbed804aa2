"""The operator library: training-time parameterizations of a dense convolution, each collapsible to one
plain ``nn.Conv2d``. Usable on its own::

    from operators import WeightedConv2d
    op = WeightedConv2d.from_conv(conv, density=(0.8,))
    deployed = op.collapse()          # a plain nn.Conv2d with the same eval-mode output

Registry: ``operators.get(name)``, ``operators.names()``. This package imports torch only.
"""

from .base import ConvOperator, ConvSpec, ParamSpec, conv2d, make_conv
from .registry import get, names, register
from .plain import PlainConv2d  # noqa: I001  (import order = registry order)
from . import dcls, orthogonal, complex  # noqa: F401, E402

__all__ = [
    "ConvOperator",
    "ConvSpec",
    "ParamSpec",
    "PlainConv2d",
    "conv2d",
    "get",
    "make_conv",
    "names",
    "register",
]
