"""Graph capture (torch.fx), shape propagation on meta tensors, a networkx view, and the rewrite API."""

from .capture import NasTracer, capture, trace
from .rewrite import (
    Ineligible,
    RewriteResult,
    Selector,
    operator_builder,
    rewrite,
    rewrite_with_operator,
    selector,
)
from .shapes import propagate_shapes, register_function_rule
from .view import ConvNode, conv_nodes, graph_view, node_keys

__all__ = [
    "ConvNode",
    "Ineligible",
    "NasTracer",
    "RewriteResult",
    "Selector",
    "capture",
    "conv_nodes",
    "graph_view",
    "node_keys",
    "operator_builder",
    "propagate_shapes",
    "register_function_rule",
    "rewrite",
    "rewrite_with_operator",
    "selector",
    "trace",
]
