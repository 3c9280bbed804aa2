"""Read a pickle that should hold only data (CIFAR's batches): a restricted unpickler that builds dicts, lists,
strings, bytes, numbers and numpy arrays, and refuses every other global, so a crafted file in a data folder
cannot run code when it is read (``pickle.load`` would call whatever the file names).
"""

from __future__ import annotations

import codecs
import pickle
from typing import IO, Any

import numpy as np


def _allowed() -> dict[tuple[str, str], Any]:
    """The globals a pickled numpy array needs, under the module names numpy 1 and numpy 2 write."""
    from numpy._core import multiarray, numeric

    reconstruct = multiarray._reconstruct
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"): a pure function.
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    return allowed


class DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a data file may hold only data")
        return allowed[(module, name)]


def load_data_pickle(file: IO[bytes], encoding: str = "ASCII") -> Any:
    """``pickle.load(file, encoding=...)`` restricted to plain data and numpy arrays."""
    return DataOnlyUnpickler(file, encoding=encoding).load()
