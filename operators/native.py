"""C kernels for the CPU, compiled on first use with the machine's C compiler and called through ``ctypes``.

Some constructions are chains of small, memory-bound steps in torch ops (the DCLS kernel: a dozen passes over a
few MiB for some 2 million multiply-adds), which eager PyTorch cannot fuse. Their C versions (``csrc/*.c``, plain
C with no Python or torch headers) do it in one pass. ``Library(name, functions)`` builds ``csrc/<name>.c`` into a
shared library the first time a function is asked for, in a cache directory keyed by the source, the compiler and
its flags (``$NAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/nas``, else ``~/.cache/nas``; written atomically, so parallel
processes can build at once), then loads it.

Nothing depends on it: where there is no compiler (``$CC``, else ``cc``), the build fails, or native kernels are
turned off (``NAS_NATIVE=0`` in the environment, or ``use_native(False)``), ``function`` returns None, with one
warning naming the reason (logged, ``operators.native``), and callers run their torch ops.
``accepts(*tensors)`` says whether tensors may be handed to C at all: plain float32 CPU tensors in eager mode (a
trace, a compile or a dispatch mode such as ``FakeTensorMode`` must see torch ops). Callers ask it before
``function``, so a GPU or float64 model never builds the library.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .scratch import eager_cpu

LOG = logging.getLogger(__name__)
SOURCES = Path(__file__).resolve().parent / "csrc"
FLAGS = ("-O3", "-std=gnu11", "-fPIC", "-shared", "-Wno-psabi")
BUILD_SECONDS = 300  # a compiler that takes longer is given up on
# ctypes signatures: (result type, argument types)
Signature = tuple[type, tuple[type, ...]]

_enabled = os.environ.get("NAS_NATIVE", "1") != "0"


def native_enabled() -> bool:
    return _enabled


@contextmanager
def use_native(enabled: bool) -> Iterator[None]:
    """Native kernels on or off (process-wide) for the block: benchmarks and tests compare the two paths."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


def accepts(*tensors: torch.Tensor) -> bool:
    """Whether a native kernel may read and write these tensors' memory: plain float32 CPU tensors in eager mode
    (``scratch.eager_cpu``)."""
    return eager_cpu(*tensors) and all(t.dtype == torch.float32 for t in tensors)


def cache_directory() -> Path:
    if os.environ.get("NAS_CACHE_DIR"):
        return Path(os.environ["NAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nas"


def build(source: Path, compiler: str, directory: Path) -> Path:
    """The shared library of ``source``, compiled unless the cache holds it; raises ``RuntimeError`` with the
    compiler's message when it fails. ``compiler`` is a command line, as ``$CC`` (``"ccache gcc"``)."""
    text = source.read_bytes()
    key = hashlib.sha256(b"\0".join([text, compiler.encode(), " ".join(FLAGS).encode()])).hexdigest()[:16]
    target = directory / f"{source.stem}-{platform.machine()}-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        built = Path(work) / target.name
        command = [*shlex.split(compiler), *FLAGS, "-o", str(built), str(source)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=BUILD_SECONDS)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"{compiler} took over {BUILD_SECONDS} s on {source.name}") from error
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {done.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: another process building the same library meets a whole file
    return target


class Library:
    """The functions of ``csrc/<name>.c`` with their ctypes signatures, built and loaded on first use."""

    def __init__(self, name: str, functions: dict[str, Signature]) -> None:
        self.name, self.signatures = name, functions
        self._lock = threading.Lock()
        self._functions: dict[str, ctypes._CFuncPtr] | None = None
        self._failure: str | None = None

    def function(self, name: str):
        """The C function, or None (native kernels off, or the library cannot be built: warned once)."""
        if not _enabled or self._failure is not None:
            return None
        if self._functions is None:
            with self._lock:
                if self._functions is None and self._failure is None:
                    self._load()
        return None if self._functions is None else self._functions[name]

    @property
    def failure(self) -> str | None:
        """Why the library could not be built or loaded (None when it was, or has not been tried)."""
        return self._failure

    def _load(self) -> None:
        compiler = os.environ.get("CC", "cc")
        try:
            if not compiler.strip() or shutil.which(shlex.split(compiler)[0]) is None:
                raise RuntimeError(f"no C compiler ({compiler!r} is not on PATH)")
            library = ctypes.CDLL(str(build(SOURCES / f"{self.name}.c", compiler, cache_directory())))
        except (OSError, RuntimeError, ValueError) as error:  # ValueError: an unparsable $CC
            self._failure = str(error)
            LOG.warning(
                "operators: native %s unavailable, using torch ops instead (slower on the CPU): %s",
                self.name,
                self._failure,
            )
            return
        functions = {}
        for name, (result, arguments) in self.signatures.items():
            function = getattr(library, name)
            function.restype, function.argtypes = result, list(arguments)
            functions[name] = function
        self._functions = functions
