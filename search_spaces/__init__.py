"""Built-in model families (plain model code: torch and ``operators`` at most) and the YAML search spaces.

Families register themselves on import; see ``registry.py``.
"""

from .registry import Family, family_names, get_family, register_family

__all__ = ["Family", "family_names", "get_family", "register_family"]
