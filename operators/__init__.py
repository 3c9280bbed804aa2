"""The operator library: training-time parameterizations of a dense convolution, each collapsible to one
plain ``nn.Conv2d``. Usable on its own::

    from operators import WeightedConv2d
    op = WeightedConv2d.from_conv(conv, density=0.8)
    deployed = op.collapse()          # a plain nn.Conv2d with the same eval-mode output

Registry: ``operators.get(name)``, ``operators.names()``. This package imports torch only.
"""

from .base import ConvOperator, ConvSpec, ParamSpec, conv2d, make_conv
from .registry import get, names, register

# Importing an operator module registers it; this order is the registry's (and `nas ops`') order.
from .plain import PlainConv2d  # isort: skip
from .large_kernel import LargeKernelConv2d  # isort: skip
from .dcls import DclsConv2d  # isort: skip
from .weighted import WeightedConv2d  # isort: skip
from .conv_lora import ConvLoRA2d  # isort: skip
from .orthogonal import OrthogonalConv2d  # isort: skip
from .complex import ComplexConv2d  # isort: skip

__all__ = [
    "ComplexConv2d",
    "ConvLoRA2d",
    "ConvOperator",
    "ConvSpec",
    "DclsConv2d",
    "LargeKernelConv2d",
    "OrthogonalConv2d",
    "ParamSpec",
    "PlainConv2d",
    "WeightedConv2d",
    "conv2d",
    "get",
    "make_conv",
    "names",
    "register",
]
