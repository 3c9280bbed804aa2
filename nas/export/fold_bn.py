"""Fold eval-mode BatchNorm into the convolution that feeds it, on a torch.fx graph.

In eval mode ``bn(y) = gamma * (y - mean) / sqrt(var + eps) + beta`` is an affine map per channel, and a conv
``y = W * x + b`` is linear in its kernel, so their composition is one conv (Ioffe & Szegedy 2015, sec. 3.2;
the standard inference-time fusion):

    scale = gamma / sqrt(var + eps)                 # (C_out,)
    W'    = W * scale[:, None, None, None]          # (C_out, C_in / groups, kh, kw)
    b'    = (b - mean) * scale + beta               # (C_out,), b = 0 for a conv without bias

A BatchNorm is folded only when it is exact to do so: it is a plain ``nn.BatchNorm2d`` in eval mode with
running statistics, its input is the output of a plain ``nn.Conv2d`` that no other node reads, and that conv
module is called from one node only. Every other BatchNorm stays as it is.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.fx as fx
from torch import nn


def _is_plain(module: nn.Module, cls: type[nn.Module]) -> bool:
    """``module`` is ``cls`` or a subclass that does not change its forward (its math is ``cls``'s)."""
    return isinstance(module, cls) and type(module).forward is cls.forward


def folded_conv(conv: nn.Conv2d, batchnorm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``batchnorm(conv(x))`` for an eval-mode ``batchnorm`` (formula in the module doc)."""
    if batchnorm.running_mean is None or batchnorm.running_var is None:
        raise ValueError("a BatchNorm without running statistics normalizes by batch statistics; cannot fold")
    if batchnorm.num_features != conv.out_channels:
        raise ValueError(
            f"BatchNorm of {batchnorm.num_features} channels after a conv of {conv.out_channels}"
        )
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        weight = conv.weight.double()  # (C_out, C_in / groups, kh, kw)
        mean = batchnorm.running_mean.double()  # (C_out,)
        var = batchnorm.running_var.double()  # (C_out,)
        gamma = batchnorm.weight.double() if batchnorm.weight is not None else torch.ones_like(mean)
        beta = batchnorm.bias.double() if batchnorm.bias is not None else torch.zeros_like(mean)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + batchnorm.eps)  # (C_out,)
        new_weight = weight * scale.reshape(-1, 1, 1, 1)
        new_bias = (bias - mean) * scale + beta
    fused.weight = nn.Parameter(new_weight.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    return fused


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def _foldable_source(node: fx.Node, modules: dict[str, nn.Module], calls: Counter) -> fx.Node | None:
    """The conv node ``node`` (a BatchNorm call) can be folded into, or None."""
    if node.op != "call_module" or not _is_plain(modules.get(node.target), nn.BatchNorm2d):
        return None
    batchnorm = modules[node.target]
    if batchnorm.training or batchnorm.running_mean is None or len(node.args) != 1 or node.kwargs:
        return None
    source = node.args[0]
    if not isinstance(source, fx.Node) or source.op != "call_module":
        return None
    conv = modules.get(source.target)
    if not _is_plain(conv, nn.Conv2d) or len(source.users) != 1 or calls[source.target] != 1:
        return None
    return source


def fold_batchnorm(module: fx.GraphModule) -> list[str]:
    """Fold every foldable BatchNorm of ``module`` into its conv, in place; returns the folded convs' paths.

    The BatchNorm's node is removed from the graph (its users read the conv's node) and its module is deleted
    when no other node calls it.
    """
    modules = dict(module.named_modules())
    calls = Counter(node.target for node in module.graph.nodes if node.op == "call_module")
    folded: list[str] = []
    for node in list(module.graph.nodes):
        source = _foldable_source(node, modules, calls)
        if source is None:
            continue
        fused = folded_conv(modules[source.target], modules[node.target])
        _set_submodule(module, source.target, fused)
        modules[source.target] = fused
        node.replace_all_uses_with(source)
        module.graph.erase_node(node)
        calls[node.target] -= 1
        if calls[node.target] == 0:
            module.delete_submodule(node.target)
        folded.append(source.target)
    if folded:
        module.graph.lint()
        module.recompile()
    return folded
