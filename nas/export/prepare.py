"""From a trained model to the graph that is exported: operators collapsed, parametrizations materialized,
BatchNorm folded, eval mode, and fx's type annotations dropped (TorchScript cannot resolve fx's aliases)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import parametrize

from ..graph.collapse import collapse_operators, count_operators
from .fold_bn import fold_batchnorm


@dataclass
class PreparedModel:
    module: nn.Module  # eval mode, plain modules only
    collapsed: int  # operators replaced by their plain conv
    folded: list[str] = field(default_factory=list)  # convs a BatchNorm was folded into
    materialized: list[str] = field(default_factory=list)  # parametrized tensors made plain ("path.weight")


def materialize_parametrizations(module: nn.Module) -> list[str]:
    """Replace every ``torch.nn.utils.parametrize`` parametrization by its current value, in place.

    Scripted parametrized modules compile but fail when called; their eval-mode value is what deployment runs.
    ``parametrize.remove_parametrizations`` is not used: it deletes the property from the parametrized class,
    which a deep copy shares with the original model (and would break it). Instead each module gets back its
    original class and the values are registered as plain parameters (buffers where the original was one).
    """
    done = []
    for path, submodule in list(module.named_modules()):
        if not parametrize.is_parametrized(submodule):
            continue
        names = list(submodule.parametrizations.keys())
        with torch.no_grad():
            values = {name: getattr(submodule, name).detach().clone() for name in names}
        is_parameter = {
            name: isinstance(submodule.parametrizations[name].original, nn.Parameter)
            if hasattr(submodule.parametrizations[name], "original")
            else True
            for name in names
        }
        submodule.__class__ = type(submodule).__bases__[0]  # parametrize's injected class -> the original
        del submodule._modules["parametrizations"]
        for name, value in values.items():
            if is_parameter[name]:
                submodule.register_parameter(name, nn.Parameter(value))
            else:
                submodule.register_buffer(name, value)
            done.append(f"{path}.{name}" if path else name)
    return done


def strip_annotations(module: fx.GraphModule) -> None:
    """Drop the type annotations fx copies from the traced forward (``_torch_Tensor_``...); TorchScript then
    infers ``Tensor`` for every input, which is what a captured CNN takes."""
    for node in module.graph.nodes:
        node.type = None
    module.recompile()


def prepare_for_export(module: nn.Module, fold_bn: bool = True) -> PreparedModel:
    """A copy of ``module`` ready to script: eval mode, operators collapsed, parametrizations materialized,
    BatchNorm folded into the preceding conv (``fold_bn``) when ``module`` is an fx GraphModule."""
    operators_before = count_operators(module)
    prepared = collapse_operators(module)  # a deep copy
    prepared.eval()
    materialized = materialize_parametrizations(prepared)
    folded: list[str] = []
    if isinstance(prepared, fx.GraphModule):
        if fold_bn:
            folded = fold_batchnorm(prepared)
        strip_annotations(prepared)
    return PreparedModel(prepared, operators_before, folded, materialized)
