"""Model scaling (Dollar, Singh, Girshick 2021, "Fast and Accurate Model Scaling"), pycls-exact for the built-in
families and graph-level for any captured model.

- ``rules``: rule spellings (``dWr``, ``d1_w8_g8_r1``, ``dw``, ``alpha=0.8``) and the factors of a multiplier.
- ``rounding``: pycls's rounding of depths, widths, group widths and resolutions.
- ``parametric``: the built-in families' parameters scaled and rebuilt.
- ``channel_algebra``, ``channel_groups``, ``channel_ops``, ``width``: width scaling of a graph.
- ``blocks``: stages and repeated blocks of a graph; ``depth``: deepening or shortening them.
- ``graph_scaling``: resolution, depth and width of any captured model.
- ``architecture``: the per-stage summary (depths, widths, group widths, resolution) before and after.
- ``api``: ``scale_model`` -> ``ScaledModel``; ``scaled_file``: the ``--out`` file and ``load_scaled``.
"""

from .api import ScaledModel, scale_model
from .architecture import Architecture
from .graph_scaling import GraphScaling, scale_graph
from .parametric import FamilyScaler, get_scaler, register_scaler
from .rules import ScalingFactors, ScalingRule, parse_rule, scaling_factors
from .scaled_file import load_scaled, read_scaled, save_scaled, scaled_document

__all__ = [
    "Architecture",
    "FamilyScaler",
    "GraphScaling",
    "ScaledModel",
    "ScalingFactors",
    "ScalingRule",
    "get_scaler",
    "load_scaled",
    "parse_rule",
    "read_scaled",
    "register_scaler",
    "save_scaled",
    "scale_graph",
    "scale_model",
    "scaled_document",
    "scaling_factors",
]
