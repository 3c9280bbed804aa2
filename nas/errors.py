"""Errors the user can fix. The CLI prints their message as one line and exits with code 2."""

from __future__ import annotations


class NasError(Exception):
    """Bad input: a model reference, a space file, a value. The message names the thing and the problem."""


class ModelError(NasError):
    """A model reference that cannot be resolved or built."""


class CaptureError(NasError):
    """A model that torch.fx cannot trace, or whose shapes cannot be propagated."""


class RewriteError(NasError):
    """A rewrite that would change a node's output shape, or an unknown operator or parameter."""


class DataError(NasError):
    """A dataset that cannot be loaded: unknown name or option, missing folder or file, bad callable result."""
