"""Memory for tensors a kernel construction returns, used again once the caller has let go of it.

A DCLS layer builds a new dense kernel (a few hundred KiB) on every training step and returns it: the conv
saves it for the backward, which frees it. On the CPU a new tensor of that size comes from the C library's
``malloc``, which, depending on everything else the process allocated and freed before, may have given the freed
block back to the operating system, so that every page of the next one is faulted in again: in 7 of 12 fresh
processes the batch-1 forward of a 64->64 layer faulted in 1.8 MiB per call, and in none with the pool
(``benchmarks/dcls_page_faults.py``). The backward returns the parameters' gradients from the pool too.

``RECYCLED.empty(like, *shape)`` returns a new tensor (its own ``TensorImpl``, no autograd history) on storage kept
from earlier calls when nothing but the pool refers to that storage any longer: no tensor, view or autograd graph
(a saved tensor holds its storage until the backward has run). Otherwise, or where no storage is kept (not a CPU
tensor, a torch.compile trace, a pool over its byte limit, another thread in it), it allocates, so what a caller
gets never depends on the pool, only the speed does.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch

from .scratch import keepable

# Bytes of storage kept in all, least recently asked-for sizes dropped first (the kernels of a network's
# layers, one storage per layer of a size while a step holds them all).
LIMIT_BYTES = 64 << 20
# torch's count of a storage's references (its own tests use it); without it the pool allocates every time
_CAN_COUNT = hasattr(torch._C, "_storage_Use_Count")


def _unused(storage: torch.UntypedStorage) -> bool:
    """Whether the pool's reference is the storage's only one (torch counts every tensor and view on it)."""
    return torch._C._storage_Use_Count(storage._cdata) == 1


class Recycled:
    """Storages by (dtype, bytes), each handed out as one new tensor at a time."""

    def __init__(self, limit_bytes: int = LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[torch.dtype, int], list[torch.UntypedStorage]] = OrderedDict()
        self._bytes = 0

    @property
    def kept_bytes(self) -> int:
        return self._bytes

    def empty(self, like: torch.Tensor, *shape: int) -> torch.Tensor:
        """An uninitialized contiguous tensor of ``shape`` with ``like``'s dtype and device."""
        nbytes = math.prod(shape) * like.element_size()
        reusable = _CAN_COUNT and nbytes > 0 and keepable(like, nbytes, self.limit_bytes)
        if not reusable or not self._lock.acquire(blocking=False):
            return like.new_empty(shape)
        try:  # the tensor is made before the lock is released, so no other thread sees the storage unused
            storage = self._storage(like.dtype, nbytes)
            return like.new_empty(shape) if storage is None else like.new_empty(0).set_(storage, 0, shape)
        finally:
            self._lock.release()

    def _storage(self, dtype: torch.dtype, nbytes: int) -> torch.UntypedStorage | None:
        key = (dtype, nbytes)
        kept = self._kept.setdefault(key, [])
        self._kept.move_to_end(key)
        for storage in kept:
            if _unused(storage):
                return storage
        while self._bytes + nbytes > self.limit_bytes and len(self._kept) > 1:
            _, dropped = self._kept.popitem(last=False)  # the least recently asked-for size
            self._bytes -= sum(storage.nbytes() for storage in dropped)
        if self._bytes + nbytes > self.limit_bytes:
            return None  # this size alone fills the pool: allocate per call
        storage = torch.UntypedStorage(nbytes)
        kept.append(storage)
        self._bytes += nbytes
        return storage

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


RECYCLED = Recycled()
