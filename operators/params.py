"""``ParamSpec``: one searchable operator parameter, its type, range and default (the search's distribution)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParamSpec:
    """One searchable operator parameter. The search turns it into an Optuna distribution.

    ``kind`` is ``int``, ``float``, ``categorical`` or ``bool``. Numeric kinds use ``low``/``high`` (inclusive),
    optionally ``log`` or ``step``; categorical uses ``choices``.
    """

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    step: float | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "categorical", "bool"):
            raise ValueError(f"ParamSpec {self.name}: unknown kind {self.kind!r}")
        if self.kind in ("int", "float") and (self.low is None or self.high is None):
            raise ValueError(f"ParamSpec {self.name}: numeric parameters need low and high")
        if self.kind == "categorical" and not self.choices:
            raise ValueError(f"ParamSpec {self.name}: categorical parameters need choices")

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ValueError naming the parameter."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError(f"{self.name} must be true or false, got {value!r}")
        if self.kind == "categorical":
            for choice in self.choices or ():
                if value == choice or str(value) == str(choice):
                    return choice
            raise ValueError(f"{self.name} must be one of {list(self.choices or ())}, got {value!r}")
        try:
            number = int(value) if self.kind == "int" else float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"{self.name} must be {'an integer' if self.kind == 'int' else 'a number'}, got {value!r}"
            ) from None
        if self.kind == "int" and isinstance(value, float) and not float(value).is_integer():
            raise ValueError(f"{self.name} must be an integer, got {value!r}")
        if not (self.low <= number <= self.high):  # type: ignore[operator]
            raise ValueError(f"{self.name} must be in [{self.low}, {self.high}], got {value!r}")
        return number

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "default": self.default}
        if self.kind in ("int", "float"):
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.kind == "categorical":
            out["choices"] = list(self.choices or ())
        if self.help:
            out["help"] = self.help
        return out
