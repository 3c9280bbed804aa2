"""From a trained model to a deployable one: every operator collapsed to its plain conv."""

from __future__ import annotations

import copy

from torch import nn

from operators import ConvOperator


def collapse_operators(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with every operator replaced by ``collapse()`` (a plain ``nn.Conv2d``); a copy unless ``inplace``."""
    model = model if inplace else copy.deepcopy(model)
    if isinstance(model, ConvOperator):
        return model.collapse()
    collapsed_paths: list[str] = []
    for path, module in list(model.named_modules()):
        if not isinstance(module, ConvOperator) or any(path.startswith(p + ".") for p in collapsed_paths):
            continue
        collapsed_paths.append(path)
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        collapsed = module.collapse()
        collapsed.train(module.training)
        setattr(parent, child, collapsed)
    return model


def count_operators(model: nn.Module) -> int:
    return sum(isinstance(m, ConvOperator) for m in model.modules())
