"""torch.fx capture: any symbolically traceable model becomes a GraphModule whose shapes are known.

Leaf modules (kept as one ``call_module`` node) are torch.nn's own modules, every operator of the library, and
whatever the caller adds; everything else is traced through. ``call_module`` nodes are named by module path
(``layer1.0.conv1``) in the networkx view (``graph_view``); fx's own node names are identifiers.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from operators import ConvOperator

from ..errors import CaptureError, NasError
from .shapes import propagate_shapes


class NasTracer(fx.Tracer):
    """fx tracer that keeps operators and the given module types as leaves, and remembers where it is."""

    def __init__(self, leaf_types: Sequence[type[nn.Module]] = (), leaf_paths: Iterable[str] = ()) -> None:
        super().__init__()
        self.leaf_types = tuple(leaf_types)
        self.leaf_paths = frozenset(leaf_paths)
        self.call_stack: list[tuple[str, type]] = []

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if (
            isinstance(module, ConvOperator)
            or isinstance(module, self.leaf_types)
            or qualified_name in self.leaf_paths
        ):
            return True
        return super().is_leaf_module(module, qualified_name)

    def call_module(self, module: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.call_stack.append((self.path_of_module(module), type(module)))
        result = super().call_module(module, forward, args, kwargs)
        self.call_stack.pop()
        return result


def _untraceable(error: Exception, tracer: NasTracer, model: nn.Module) -> CaptureError:
    """One line: the call that failed, why, and how to make it a leaf."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if tracer.call_stack:
        path, cls = tracer.call_stack[-1]
        where = f"module {path or '<root>'!r} ({cls.__module__}.{cls.__qualname__})"
        hint = (
            f"mark it as a leaf: capture(..., leaf_modules=[{cls.__qualname__}]) or --leaf {cls.__module__}.{cls.__qualname__}"
            if path
            else "wrap the data-dependent part in a submodule and mark that module as a leaf"
        )
    else:
        cls = type(model)
        where, hint = f"{cls.__qualname__}.forward", "mark the offending submodule as a leaf"
    return CaptureError(f"torch.fx cannot trace {where}: {type(error).__name__}: {reason}; {hint}")


def trace(
    model: nn.Module, leaf_modules: Sequence[type[nn.Module]] = (), leaf_paths: Iterable[str] = ()
) -> fx.GraphModule:
    """Symbolically trace ``model`` in eval mode (train-only branches such as auxiliary heads drop out);
    the returned GraphModule shares the model's submodules and is left in the model's original mode."""
    if isinstance(model, fx.GraphModule):
        return model
    tracer = NasTracer(leaf_modules, leaf_paths)
    was_training = model.training
    model.eval()
    try:
        graph = tracer.trace(model)
    except CaptureError:
        raise
    except Exception as error:
        raise _untraceable(error, tracer, model) from error
    finally:
        model.train(was_training)
    name = type(model).__name__
    module = fx.GraphModule(tracer.root, graph, name)
    module.train(was_training)
    return module


def capture(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    leaf_modules: Sequence[type[nn.Module]] = (),
    dtype: torch.dtype = torch.float32,
) -> fx.GraphModule:
    """Trace ``model`` and propagate the shapes of an input (channels, height, width) on meta tensors."""
    module = trace(model, leaf_modules)
    propagate_shapes(module, (batch_size, *input_shape), dtype=dtype)
    module.meta["input_shape"] = tuple(input_shape)
    module.meta["batch_size"] = batch_size
    return module


def resolve_leaf_types(names: Sequence[str]) -> list[type[nn.Module]]:
    """``["torchvision.ops.misc.Permute"]`` -> the classes; a bad name is a clear error."""
    types = []
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError):
            raise NasError(
                f"--leaf {name!r}: cannot import that class (expected package.module.ClassName)"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise NasError(f"--leaf {name!r} is not a torch.nn.Module subclass")
        types.append(cls)
    return types
