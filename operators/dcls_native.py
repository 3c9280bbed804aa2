"""The DCLS kernel's forward in C (``csrc/dcls_kernel.c``): one pass for what ``dcls_kernel.Workspace`` does in a
dozen torch ops, for float32 on the CPU in eager mode (``native.accepts``). Same math, same clamps, same taps'
order in the sum; float32 rounding apart (its ``exp2`` is a polynomial within float32's precision), it equals the
torch ops' kernel. The backward stays in torch ops (``dcls_kernel.kernel_adjoint``).
"""

from __future__ import annotations

import ctypes

import torch

from .native import Library, accepts
from .recycled import RECYCLED

_POINTER, _SIZE, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
LIBRARY = Library(
    "dcls_kernel",
    {"dcls_kernel_f32": (ctypes.c_int, (_POINTER, _POINTER, _POINTER, _POINTER, _SIZE, _INT, _INT, _INT))},
)


def native_kernel(weight, positions, spreads, shape) -> torch.Tensor | None:
    """The dense kernel as (N, H * W), a new tensor on recycled storage, or None where the C kernel does not apply
    (then the caller builds it with torch ops). Arguments as ``dcls_kernel.build_kernel`` (``spreads`` None for
    bilinear); ``shape`` a ``KernelShape``."""
    if not accepts(*(t for t in (weight, positions, spreads) if t is not None)):
        return None
    build = LIBRARY.function("dcls_kernel_f32")
    if build is None:
        return None
    weight, positions = weight.contiguous(), positions.contiguous()
    spreads = None if spreads is None else spreads.contiguous()
    dense = RECYCLED.empty(weight, shape.filters, shape.height * shape.width)
    status = build(
        weight.data_ptr(),
        positions.data_ptr(),
        None if spreads is None else spreads.data_ptr(),
        dense.data_ptr(),
        shape.filters,
        shape.kernel_count,
        shape.height,
        shape.width,
    )
    if status != 0:
        raise MemoryError(f"dcls: no memory for the kernel construction's working space ({shape})")
    return dense
