"""Shape propagation on meta tensors, with no real compute.

Every node of a captured graph gets ``node.meta["shape"]`` (a tuple for a tensor output, a list of tuples for a
tuple of tensors) and ``node.meta["dtype"]``. Compute ops whose output shape follows from a formula (convs,
linears, pools, elementwise ops, concatenation, reductions) get it by that formula: running them on meta tensors
costs up to a millisecond per op here, the formula a few microseconds. Everything else (views, reshapes,
indexing, unknown modules) runs on meta tensors, which is exact and still allocates nothing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from operators import ConvOperator, ConvSpec

from ..errors import CaptureError

META = torch.device("meta")


def _like(shape: tuple[int, ...], reference: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=reference.dtype, device=META)


# -- formulas ------------------------------------------------------------------------------------------------
def conv_output_shape(spec: ConvSpec, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C_out, H', W') of a 2-D conv (nn.Conv2d's formula)."""
    height, width = spec.output_size(input_shape[-2], input_shape[-1])
    return (*input_shape[:-3], spec.out_channels, height, width)


def _pool_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """nn.MaxPool2d / nn.AvgPool2d output size, ceil mode included (a window must start inside the input)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_output_shape(
    input_shape: tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    pair = nn.modules.utils._pair
    kernel, pad, dil = pair(kernel_size), pair(padding), pair(dilation)
    step = pair(stride) if stride not in (None, ()) else kernel
    sizes = [_pool_size(input_shape[-2 + i], kernel[i], step[i], pad[i], dil[i], ceil_mode) for i in range(2)]
    return (*input_shape[:-2], *sizes)


def adaptive_output_shape(input_shape: tuple[int, ...], output_size: Any) -> tuple[int, ...]:
    sizes = nn.modules.utils._pair(output_size)
    sizes = tuple(input_shape[-2 + i] if s is None else s for i, s in enumerate(sizes))
    return (*input_shape[:-2], *sizes)


# -- module rules: (module, args, kwargs) -> meta tensor -----------------------------------------------------
def _same(module_or_none: Any, x: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
    return _like(tuple(x.shape), x)


def _conv_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    spec = module.spec if isinstance(module, ConvOperator) else ConvSpec.from_conv(module)
    if x.dim() not in (3, 4) or x.shape[-3] != spec.in_channels:
        raise CaptureError(
            f"conv expects {spec.in_channels} input channels, got input of shape {tuple(x.shape)}"
        )
    return _like(conv_output_shape(spec, tuple(x.shape)), x)


def _linear_module(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] != module.in_features:
        raise CaptureError(f"Linear expects {module.in_features} input features, got shape {tuple(x.shape)}")
    return _like((*x.shape[:-1], module.out_features), x)


def _pool_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    dilation = getattr(module, "dilation", 1)
    shape = pool_output_shape(
        tuple(x.shape), module.kernel_size, module.stride, module.padding, dilation, module.ceil_mode
    )
    return _like(shape, x)


def _adaptive_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _like(adaptive_output_shape(tuple(x.shape), module.output_size), x)


_SHAPE_PRESERVING_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.PReLU,
    nn.Softplus,
    nn.Hardtanh,
    nn.Identity,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout1d,
    nn.AlphaDropout,
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.ChannelShuffle,
)

MODULE_RULES: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.Conv2d: _conv_module,
    ConvOperator: _conv_module,
    nn.Linear: _linear_module,
    nn.MaxPool2d: _pool_module,
    nn.AvgPool2d: _pool_module,
    nn.AdaptiveAvgPool2d: _adaptive_module,
    nn.AdaptiveMaxPool2d: _adaptive_module,
    **{cls: _same for cls in _SHAPE_PRESERVING_MODULES},
}


def module_rule(module_type: type) -> Callable[..., torch.Tensor] | None:
    """The shape rule of the nearest class in ``module_type``'s MRO that has one."""
    for cls in module_type.__mro__:
        rule = MODULE_RULES.get(cls)
        if rule is not None:
            return rule
    return None


# -- function and method rules: (args, kwargs) -> meta tensor -------------------------------------------------
def _unary(x: Any, *rest: Any, **kwargs: Any) -> Any:
    return _like(tuple(x.shape), x) if isinstance(x, torch.Tensor) else None


def _broadcast(a: Any, b: Any, *rest: Any, **kwargs: Any) -> Any:
    tensors = [t for t in (a, b) if isinstance(t, torch.Tensor)]
    if not tensors:
        return None
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    dtype = torch.result_type(a, b) if len(tensors) == 2 else tensors[0].dtype
    return torch.empty(tuple(shape), dtype=dtype, device=META)


def _cat(tensors: Any, dim: int = 0, **kwargs: Any) -> Any:
    dim = kwargs.get("dim", dim)
    tensors = list(tensors)
    first = tensors[0]
    dim = dim % first.dim()
    shape = list(first.shape)
    for t in tensors[1:]:
        if t.dim() != first.dim() or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim
        ):
            raise CaptureError(
                f"torch.cat of shapes {[tuple(t.shape) for t in tensors]} along dim {dim}: sizes differ"
            )
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _like(tuple(shape), first)


def _reduce(x: Any, dim: Any = None, keepdim: bool = False, **kwargs: Any) -> Any:
    dim = kwargs.get("dim", dim)
    keepdim = kwargs.get("keepdim", keepdim)
    if not isinstance(x, torch.Tensor) or "dtype" in kwargs:
        return None
    if dim is None:
        return _like((), x) if not keepdim else _like((1,) * x.dim(), x)
    dims = {d % x.dim() for d in ((dim,) if isinstance(dim, int) else dim)}
    shape = [1 if i in dims else s for i, s in enumerate(x.shape) if keepdim or i not in dims]
    return _like(tuple(shape), x)


def _conv_function(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    **kwargs: Any,
) -> Any:
    if isinstance(padding, str):
        return None
    out_channels, in_per_group, kh, kw = weight.shape
    spec = ConvSpec.create(in_per_group * groups, out_channels, (kh, kw), stride, padding, dilation, groups)
    return _like(conv_output_shape(spec, tuple(x.shape)), x)


def _linear_function(x: Any, weight: Any, bias: Any = None) -> Any:
    return _like((*x.shape[:-1], weight.shape[0]), x)


def _pool_function(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, *rest: Any, **kwargs: Any
) -> Any:
    if rest or set(kwargs) - {"ceil_mode", "dilation", "count_include_pad"}:
        return None
    dilation = kwargs.get("dilation", 1)
    return _like(
        pool_output_shape(
            tuple(x.shape), kernel_size, stride, padding, dilation, kwargs.get("ceil_mode", False)
        ),
        x,
    )


def _adaptive_function(x: Any, output_size: Any) -> Any:
    return _like(adaptive_output_shape(tuple(x.shape), output_size), x)


UNARY_FUNCTIONS = (
    F.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.hardswish,
    F.hardsigmoid,
    F.sigmoid,
    F.tanh,
    F.leaky_relu,
    F.elu,
    F.mish,
    F.hardtanh,
    F.softmax,
    F.log_softmax,
    F.dropout,
    F.dropout2d,
    F.layer_norm,
    F.group_norm,
    F.batch_norm,
    F.normalize,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.exp,
    torch.sqrt,
    torch.abs,
    torch.neg,
    torch.clamp,
    torch.softmax,
    operator.neg,
)
BROADCAST_FUNCTIONS = (
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
)
FUNCTION_RULES: dict[Any, Callable[..., Any]] = {
    **{f: _unary for f in UNARY_FUNCTIONS},
    **{f: _broadcast for f in BROADCAST_FUNCTIONS},
    torch.cat: _cat,
    torch.concat: _cat,
    torch.mean: _reduce,
    torch.sum: _reduce,
    F.conv2d: _conv_function,
    F.linear: _linear_function,
    F.max_pool2d: _pool_function,
    F.avg_pool2d: _pool_function,
    F.adaptive_avg_pool2d: _adaptive_function,
    F.adaptive_max_pool2d: _adaptive_function,
}
UNARY_METHODS = (
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "contiguous",
    "clone",
    "detach",
    "exp",
    "sqrt",
    "abs",
    "neg",
    "hardswish",
    "softmax",
)
BROADCAST_METHODS = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_")
METHOD_RULES: dict[str, Callable[..., Any]] = {
    **{m: _unary for m in UNARY_METHODS},
    **{m: _broadcast for m in BROADCAST_METHODS},
    "mean": _reduce,
    "sum": _reduce,
}


# Functions of optional packages, by qualified name (so that nothing imports them just to know them).
NAMED_FUNCTION_RULES: dict[str, Callable[..., Any]] = {
    "torchvision.ops.stochastic_depth.stochastic_depth": _unary,
}


def qualified_name(function: Any) -> str:
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or str(function)
    return f"{module}.{name}" if module and module != "builtins" else name


def function_rule(function: Any) -> Callable[..., Any] | None:
    rule = FUNCTION_RULES.get(function)
    return rule if rule is not None else NAMED_FUNCTION_RULES.get(qualified_name(function))


def register_function_rule(function: Any, rule: Callable[..., Any]) -> None:
    """Teach shape propagation a function (e.g. one wrapped with ``torch.fx.wrap``) by formula."""
    FUNCTION_RULES[function] = rule


# -- the interpreter -----------------------------------------------------------------------------------------
def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty(tuple(value.shape), dtype=value.dtype, device=META)
    return value


def _to_real(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (
            torch.randn(tuple(value.shape), dtype=value.dtype)
            if value.is_floating_point()
            else torch.zeros(tuple(value.shape), dtype=value.dtype)
        )
    if isinstance(value, (tuple, list)):
        return type(value)(_to_real(v) for v in value)
    return value


def _run_for_real(module: nn.Module, args: Any, kwargs: Any) -> Any:
    """Last resort for a leaf module meta tensors cannot run: random real inputs, outputs turned back to meta."""
    with torch.no_grad():
        output = module(*_to_real(tuple(args)), **{k: _to_real(v) for k, v in kwargs.items()})
    if isinstance(output, (tuple, list)):
        return type(output)(_to_meta(v) for v in output)
    return _to_meta(output)


def _record(node: fx.Node, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        node.meta["shape"] = tuple(value.shape)
        node.meta["dtype"] = value.dtype
    elif isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        node.meta["shape"] = [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in value]
        node.meta["dtype"] = next(v.dtype for v in value if isinstance(v, torch.Tensor))
    else:
        node.meta.pop("shape", None)
        node.meta.pop("dtype", None)


class ShapeInterpreter(fx.Interpreter):
    """Runs a GraphModule on meta tensors, computing compute-heavy ops' outputs by formula."""

    def run_node(self, node: fx.Node) -> Any:
        try:
            value = super().run_node(node)
        except CaptureError as error:
            raise CaptureError(f"node {node.name!r} ({node.format_node()}): {error}") from error
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CaptureError(
                f"shape propagation failed at node {node.name!r} ({node.format_node()}): {message}"
            ) from error
        _record(node, value)
        return value

    def get_attr(self, target: str, args: Any, kwargs: Any) -> Any:
        return _to_meta(super().get_attr(target, args, kwargs))

    def call_module(self, target: str, args: Any, kwargs: Any) -> Any:
        module = self.fetch_attr(target)
        rule = module_rule(type(module))
        if rule is not None and not kwargs:
            return rule(module, *args)
        state = {name: _to_meta(t) for name, t in (*module.named_parameters(), *module.named_buffers())}
        try:
            return torch.func.functional_call(module, state, args, kwargs)
        except Exception:  # e.g. data-dependent control flow in a leaf: run it once on random real tensors
            return _run_for_real(module, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        rule = function_rule(target)
        if rule is not None:
            value = rule(*args, **kwargs)
            if value is not None:
                return value
        return target(*args, **kwargs)

    def call_method(self, target: str, args: Any, kwargs: Any) -> Any:
        rule = METHOD_RULES.get(target)
        if rule is not None:
            value = rule(*args, **kwargs)
            if value is not None:
                return value
        self_obj, *rest = args
        return getattr(self_obj, target)(*rest, **kwargs)


def propagate_shapes(
    module: fx.GraphModule, *input_shapes: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> Any:
    """Set ``node.meta["shape"]`` on every node for inputs of ``input_shapes`` (batch included). Returns the output."""
    inputs = [torch.empty(shape, dtype=dtype, device=META) for shape in input_shapes]
    return ShapeInterpreter(module).run(*inputs)
