"""Optional dependencies, installed as extras: a user of one part does not need the others.

``pip install -e .`` installs what the main job needs (``nas search`` locally, with its report and plots, on the
bundled data sets). Two parts need more:

- ``ray``: ``nas search --backend ray`` and ``nas submit`` (Ray Tune and Ray's Jobs API): ``pip install 'nas[ray]'``;
- ``fvcore``: ``nas inspect --counter fvcore``, the cross-check of the cost counter: ``pip install 'nas[fvcore]'``.

``require(extra, feature)`` imports what an extra provides, or raises ``MissingExtra`` (a ``NasError``: the CLI
prints its one line and exits with 2) naming the feature, the missing module and the command that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import NasError

# extra -> the modules it provides that the features import (checked in this order)
EXTRAS: dict[str, tuple[str, ...]] = {
    "ray": ("ray", "ray.tune", "ray.tune.search.optuna", "ray.job_submission"),
    "fvcore": ("fvcore", "fvcore.nn"),
}


class MissingExtra(NasError):
    """An optional dependency that a feature needs is not installed."""


def install_command(extra: str) -> str:
    return f"pip install 'nas[{extra}]'"


def require(extra: str, feature: str) -> list[ModuleType]:
    """The modules of ``extra`` (imported), or ``MissingExtra`` naming ``feature`` and the extra to install."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} (known: {', '.join(EXTRAS)})")
    modules = []
    for name in EXTRAS[extra]:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            missing = getattr(error, "name", None) or name
            raise MissingExtra(
                f"{feature} needs the optional dependency {extra!r} ({missing} is not installed): "
                f"{install_command(extra)}"
            ) from None
    return modules
