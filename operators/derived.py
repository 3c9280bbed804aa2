"""``DerivedCache``: tensors an operator computes from its own state (its effective kernel, a mask), kept for
inference.

In eval under ``no_grad`` an operator's kernel is a constant, so it can be built once and its conv run alone,
as the collapsed form runs. A kept value is served only while its key matches, and the key covers everything
the value depends on:

- each source tensor: the tensor itself (held weakly, so a replaced parameter never matches its successor),
  its version counter (every in-place change), storage pointer, dtype, device, shape and strides;
- the operator's settings: every plain attribute (numbers, strings, tuples, dataclasses, the ``training``
  flag) of the operator and of its submodules, so changing ``alpha`` or a BatchNorm's ``eps`` rebuilds;
- whether inference mode is on (a tensor made in inference mode cannot enter autograd later).

Nothing is kept while autograd needs the graph (grad enabled and a source requires grad), while tracing
(``torch.fx``, ``torch.jit.trace``), compiling or exporting: there ``build()`` runs every time. A value that is not
made of plain tensors (a fake tensor under ``FakeTensorMode``, say) is returned and not kept. Imports torch only.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn

Derived = TypeVar("Derived")  # what is kept: a tensor or a tuple of them

_SETTING_TYPES: dict[type, bool] = {
    t: True for t in (bool, int, float, complex, str, bytes, type(None), tuple, torch.dtype, torch.device)
}
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def _is_setting_type(kind: type) -> bool:
    """Numbers, strings, tuples (named ones too), dtypes, devices and dataclasses: what configures an operator."""
    known = _SETTING_TYPES.get(kind)
    if known is None:
        known = _SETTING_TYPES[kind] = issubclass(kind, tuple) or dataclasses.is_dataclass(kind)
    return known


def settings(
    module: nn.Module, names: dict[int, tuple[Any, int, tuple[str, ...]]] | None = None
) -> tuple[Any, ...]:
    """The plain attributes of ``module`` and its submodules (their names, then their values), in a fixed order.

    ``names`` keeps, per module, which of its attributes are plain, so that a call reads only those; it is made
    again for a module whose attributes were added or removed since."""
    names = {} if names is None else names
    found: list[Any] = []
    pending = [module]
    while pending:
        current = pending.pop()
        attributes = current.__dict__
        kept = names.get(id(current))
        if kept is None or kept[0]() is not current or kept[1] != len(attributes):
            plain = tuple(name for name, value in attributes.items() if _is_setting_type(type(value)))
            kept = names[id(current)] = (weakref.ref(current), len(attributes), plain)
        found.append(kept[2])
        found += [attributes.get(name) for name in kept[2]]
        pending.extend(child for child in current._modules.values() if child is not None)
    return tuple(found)


def cacheable(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether a value built from ``tensors`` may be kept now (see the module's docstring)."""
    tensors = list(tensors)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if any(type(t) not in _PLAIN_TENSORS for t in tensors):  # an fx Proxy, a fake or subclass tensor
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _plain(value: Any) -> bool:
    """A plain tensor, or a tuple of them (and None): no fake, subclass or proxy value is kept."""
    items = value if isinstance(value, tuple) else (value,)
    return all(item is None or type(item) is torch.Tensor for item in items)


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t._version, t.data_ptr(), t.dtype, t.device, t.shape, t.stride())


class DerivedCache:
    """Kept values by name, each with its key (see the module's docstring)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[weakref.ref, ...], tuple[Any, ...], Any]] = {}
        self._names: dict[int, tuple[Any, int, tuple[str, ...]]] = {}

    def get(
        self,
        owner: nn.Module,
        name: str,
        build: Callable[[], Derived],
        sources: Iterable[torch.Tensor | None],
    ) -> Derived:
        tensors = [t for t in sources if t is not None]
        if not cacheable(tensors):
            return build()
        key = (
            torch.is_inference_mode_enabled(),
            tuple(_tensor_key(t) for t in tensors),
            settings(owner, self._names),
        )
        entry = self._entries.get(name)
        if entry is not None and _matches(entry, tensors, key):
            return entry[2]
        value = build()
        if _plain(value):
            self._entries[name] = (tuple(weakref.ref(t) for t in tensors), key, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._names.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _matches(entry: tuple[tuple[weakref.ref, ...], tuple[Any, ...], Any], tensors, key) -> bool:
    refs, kept_key, _ = entry
    if len(refs) != len(tensors) or any(ref() is not t for ref, t in zip(refs, tensors)):
        return False
    try:
        return bool(kept_key == key)
    except RuntimeError:  # a setting whose comparison is not a bool
        return False
