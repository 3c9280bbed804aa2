"""Built-in model families (plain model code: torch and ``operators`` at most) and the YAML search spaces.

Families register themselves on import; see ``registry.py``.
"""

from . import compact, dncnn, effnet, regnet, resnet, vgg  # noqa: F401  (importing registers the built-in families)
from .registry import Family, family_names, get_family, register_family

__all__ = ["Family", "family_names", "get_family", "register_family"]
