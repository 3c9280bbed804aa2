"""Scratch memory reused from call to call for the large CPU temporaries of a kernel construction.

On the CPU, PyTorch allocates through the C library's ``malloc``, which can return freed blocks of a few hundred
KiB and more to the operating system and map them afresh on the next call, each page then faulted in again. A
kernel construction that makes a few MiB of temporaries per layer and step pays that on every step, depending on
what else the process allocates; kept in a buffer that stays mapped, it does not.

``SCRATCH.borrow(like, numel)`` lends one flat buffer of ``like``'s dtype for the duration of a ``with`` block, and
``take(*shape)`` carves consecutive views of it. The buffer is kept between calls (one per dtype, process-wide,
at most ``LIMIT_BYTES``). Nothing carved may outlive the block: callers copy what they return. Where no buffer is
lent (not a CPU tensor, more than the limit, a trace or compile: ``eager_cpu``, or the buffer in use by another
thread) or it runs out, ``take`` allocates a new tensor, so the result never depends on the scratch, only the
speed does.

``plan(key, build)`` carves a whole set of views at once (``build(carve)``, any object holding them) and keeps it
with the buffer, so the next block that asks for the same key at the same place gets the same views without
making them again: making a view costs as much Python and dispatch time as a small op.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

# Largest buffer kept per dtype. A layer whose temporaries need more allocates them per call, as autograd would.
LIMIT_BYTES = 16 << 20
# Plans kept per buffer; past this many (a long search trying many shapes) they are dropped and made again.
MAX_PLANS = 256

Plan = TypeVar("Plan")


def eager_cpu(*tensors: torch.Tensor) -> bool:
    """Whether these are plain CPU tensors in eager mode, whose memory code outside torch's ops may use: not
    under ``torch.jit`` tracing, ``torch.compile`` / ``torch.export`` or a torch dispatch mode (``FakeTensorMode``,
    a tracer), which must see every tensor made and every op run."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    return all(type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu" for t in tensors)


def keepable(like: torch.Tensor, nbytes: int, limit_bytes: int) -> bool:
    """Whether memory for ``nbytes`` like ``like`` may be kept between calls: eager CPU memory within the limit."""
    return nbytes <= limit_bytes and eager_cpu(like)


class Carve:
    """Consecutive views of a lent buffer; new tensors once there is no buffer or it is used up."""

    def __init__(
        self, buffer: torch.Tensor | None, like: torch.Tensor, plans: dict[Hashable, tuple] | None = None
    ) -> None:
        self._buffer, self._like, self._used, self._plans = buffer, like, 0, plans

    def take(self, *shape: int) -> torch.Tensor:
        numel = math.prod(shape)
        if self._buffer is None or self._used + numel > self._buffer.numel():
            return self._like.new_empty(shape)
        view = self._buffer[self._used : self._used + numel].view(shape)
        self._used += numel
        return view

    def plan(self, key: Hashable, build: Callable[[Carve], Plan]) -> Plan:
        """``build(self)``, kept with the buffer: made once per key and place in the buffer, then reused. Whatever
        ``build`` allocated past the buffer's end is reused too (it never leaves the lending block either)."""
        if self._plans is None:
            return build(self)
        start, kept = self._used, self._plans.get(key)
        if kept is not None and kept[0] == start:
            self._used = kept[2]
            return kept[1]
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        made = build(self)
        self._plans[key] = (start, made, self._used)
        return made


class Scratch:
    """Process-wide scratch buffers, one per dtype, lent to one ``with`` block at a time."""

    def __init__(self, limit_bytes: int = LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._buffers: dict[torch.dtype, torch.Tensor] = {}
        self._plans: dict[torch.dtype, dict[Hashable, tuple]] = {}

    @contextmanager
    def borrow(self, like: torch.Tensor, numel: int) -> Iterator[Carve]:
        """A ``Carve`` of ``numel`` elements of ``like``'s dtype on the CPU, or one that allocates (see module doc)."""
        lendable = keepable(like, numel * like.element_size(), self.limit_bytes)
        if not lendable or not self._lock.acquire(blocking=False):
            yield Carve(None, like)
            return
        try:
            buffer = self._buffers.get(like.dtype)
            if buffer is None or buffer.numel() < numel:
                buffer = self._buffers[like.dtype] = torch.empty(numel, dtype=like.dtype)
                self._plans[like.dtype] = {}  # views of the old buffer
            yield Carve(buffer, like, self._plans[like.dtype])
        finally:
            self._lock.release()


SCRATCH = Scratch()
