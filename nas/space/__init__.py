"""Search space files: YAML at the edge, frozen dataclasses inside."""

from .loader import SpaceError, apply_override, build_space, builtin_spaces, load_space, resolve_space_path
from .schema import (
    COST_METRICS,
    METRICS,
    Constraint,
    DataSection,
    ModelSection,
    Objective,
    OperatorChoice,
    OperatorsSection,
    ParamDomain,
    ScalingSection,
    SearchSection,
    Space,
    TargetSection,
    TrainSection,
)

__all__ = [
    "COST_METRICS",
    "METRICS",
    "Constraint",
    "DataSection",
    "ModelSection",
    "Objective",
    "OperatorChoice",
    "OperatorsSection",
    "ParamDomain",
    "ScalingSection",
    "SearchSection",
    "Space",
    "SpaceError",
    "TargetSection",
    "TrainSection",
    "apply_override",
    "build_space",
    "builtin_spaces",
    "load_space",
    "resolve_space_path",
]
