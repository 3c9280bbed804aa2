"""fvcore as a cross-check of the analytic counter (``nas inspect --counter fvcore``).

fvcore traces with TorchScript on a real input and counts one "flop" per multiply-add, so its conv + linear +
matmul total is comparable with our ``macs``. Its BatchNorm, pooling and upsampling handlers cannot be switched
off through ``set_op_handle(..., None)`` (DESIGN.md), so only the multiply-add operators are summed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..extras import require
from ..graph.collapse import collapse_operators

MULTIPLY_ADD_OPS = ("conv", "linear", "matmul", "bmm", "einsum", "addmm", "mm")


def fvcore_count(model: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """MACs (conv, linear, matmul) and conv/linear output elements as fvcore counts them, on the deployed model."""
    require("fvcore", "the fvcore cross-check")
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    deployed = collapse_operators(model).eval()
    x = torch.randn(1, *input_shape)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        flops = (
            FlopCountAnalysis(deployed, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        )
        by_operator = flops.by_operator()
        acts = (
            ActivationCountAnalysis(deployed, x)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
        )
        activations = acts.total()
    return dict(
        macs=int(sum(v for k, v in by_operator.items() if k in MULTIPLY_ADD_OPS)),
        acts=int(activations),
        by_operator={k: int(v) for k, v in by_operator.items()},
    )
