"""Costs of a captured model, exact and analytic (no real compute): ``counter`` counts flops, MACs,
activations and parameters by pycls's conventions; ``fvcore`` is the cross-check (``nas inspect --counter
fvcore``)."""

from .counter import CostReport, NodeCost, conv_cost, count, linear_cost, node_cost, register_function_cost

__all__ = [
    "CostReport",
    "NodeCost",
    "conv_cost",
    "count",
    "linear_cost",
    "node_cost",
    "register_function_cost",
]
