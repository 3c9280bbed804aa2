"""The contract every registered operator keeps (DESIGN.md "Operators"; issue 3).

Runs over ``operators.names()`` x each operator's ``example_params`` x the geometries below. A combination the
operator declares ineligible is checked for a reason string and skipped with that reason; every operator must
accept some of them.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.fx
from torch import nn

import operators
from operators import ConvOperator, ConvSpec

# (name, conv kwargs, input (N, C, H, W))
GEOMETRIES = [
    ("dense3x3", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1), (2, 4, 9, 9)),
    (
        "dense3x3_even",
        dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, bias=False),
        (1, 4, 8, 10),
    ),
    (
        "dense3x3_stride2",
        dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1),
        (1, 4, 11, 8),
    ),
    ("dense5x5_nopad", dict(in_channels=2, out_channels=4, kernel_size=5), (1, 2, 12, 9)),
    ("dense1x1", dict(in_channels=6, out_channels=4, kernel_size=1), (1, 6, 7, 7)),
    ("grouped", dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=2), (1, 8, 9, 7)),
    ("depthwise", dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6), (2, 6, 10, 10)),
    (
        "depthwise5_stride2",
        dict(in_channels=4, out_channels=4, kernel_size=5, stride=2, padding=2, groups=4),
        (1, 4, 13, 12),
    ),
    ("dilated", dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2), (1, 4, 11, 11)),
    (
        "circular",
        dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, padding_mode="circular"),
        (1, 4, 8, 8),
    ),
    (
        "reflect_same",
        dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", padding_mode="reflect"),
        (1, 4, 7, 9),
    ),
]

CASES = [
    pytest.param(name, params, geometry, id=f"{name}-{i}-{geometry[0]}")
    for name in operators.names()
    for i, params in enumerate(operators.get(name).example_params)
    for geometry in GEOMETRIES
]


def _build(name: str, params: dict, geometry, dtype=torch.float32, seed: int = 0):
    """(operator from a reference conv, the reference conv, an input), or the reason when ineligible."""
    _, kwargs, shape = geometry
    torch.manual_seed(seed)
    conv = nn.Conv2d(**kwargs).to(dtype)
    cls = operators.get(name)
    reason = cls.eligibility(ConvSpec.from_conv(conv), **params)
    if reason is not None:
        assert isinstance(reason, str) and reason.strip(), f"{name}: an ineligible conv needs a reason"
        return reason
    op = cls.from_conv(conv, **params).to(dtype)
    x = torch.randn(shape, dtype=dtype)
    return op, conv, x


def _build_or_skip(name: str, params: dict, geometry, dtype=torch.float32, seed: int = 0):
    """``_build``'s operator, conv and input; an ineligible combination is skipped with the operator's reason."""
    built = _build(name, params, geometry, dtype, seed)
    if isinstance(built, str):
        pytest.skip(f"{name} {params} on {geometry[0]}: ineligible: {built}")
    return built


def _perturb_(op: ConvOperator, seed: int = 1) -> None:
    """Move every parameter and BN statistic off its initial value so collapse is tested on general values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for m in op.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(
                    0.1 * torch.randn(m.running_mean.shape, generator=gen, dtype=m.running_mean.dtype)
                )
                m.running_var.copy_(
                    0.5 + torch.rand(m.running_var.shape, generator=gen, dtype=m.running_var.dtype)
                )


def test_registry_has_every_operator():
    assert set(operators.names()) >= {"conv"}
    for name in operators.names():
        cls = operators.get(name)
        assert issubclass(cls, ConvOperator) and cls.name == name and cls.summary
    with pytest.raises(KeyError, match="known"):
        operators.get("no_such_operator")


@pytest.mark.parametrize("name", operators.names())
def test_param_schema_and_defaults(name):
    cls = operators.get(name)
    defaults = cls.param_defaults()
    assert cls.validate_params(defaults) == defaults
    for params in cls.example_params:
        cls.validate_params(params)
    with pytest.raises(ValueError, match="no parameter"):
        cls.validate_params({"definitely_not_a_param": 1})


@pytest.mark.parametrize("name", operators.names())
def test_accepts_some_geometry(name):
    cls = operators.get(name)
    eligible = [g for g in GEOMETRIES for p in cls.example_params if not isinstance(_build(name, p, g), str)]
    assert eligible, f"{name} accepts none of the contract geometries"


@pytest.mark.parametrize("name,params,geometry", CASES)
def test_shape_collapse_trace_state_dict(name, params, geometry):
    op, conv, x = _build_or_skip(name, params, geometry)
    assert op(x).shape == conv(x).shape

    _perturb_(op)
    op.eval()
    before = {k: v.clone() for k, v in op.state_dict().items()}
    collapsed = op.collapse()
    assert type(collapsed) is nn.Conv2d
    after = op.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "collapse() mutated the operator"
    with torch.no_grad():
        y_op, y_collapsed = op(x), collapsed(x)
    scale = y_op.abs().max().clamp_min(1e-12)
    assert ((y_op - y_collapsed).abs().max() / scale) <= 1e-5

    spec = op.collapsed_spec()
    assert spec == ConvSpec.from_conv(collapsed), "collapsed_spec() disagrees with collapse()"

    traced = torch.fx.symbolic_trace(op)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), y_op)

    buffer = io.BytesIO()
    torch.save(op.state_dict(), buffer)
    buffer.seek(0)
    fresh = operators.get(name)(**ConvSpec.from_conv(conv).conv_kwargs(), **params).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), y_op)
        torch.testing.assert_close(fresh.collapse()(x), y_collapsed)


@pytest.mark.parametrize("name,params,geometry", CASES)
def test_inference_reuses_its_kernel_only_while_the_parameters_stay(name, params, geometry):
    """Under no_grad an operator may keep its effective kernel (``ConvOperator.derived``); every in-place change of
    a parameter or buffer (an optimizer step, load_state_dict) must show in the next output."""
    built = _build_or_skip(name, params, geometry)
    op, _, x = built
    op.eval()
    with torch.no_grad():
        first, again = op(x), op(x)
        assert torch.equal(first, again)
        for seed in (1, 2):
            _perturb_(op, seed)
            torch.testing.assert_close(op(x), op.collapse()(x), rtol=1e-4, atol=1e-5)
        op.load_state_dict(built[0].state_dict())  # back to itself: unchanged values, a new version
        fresh = _build(name, params, geometry)[0].eval()
        op.load_state_dict(fresh.state_dict())
        torch.testing.assert_close(op(x), fresh(x))
    y = op(x)  # with gradients: built afresh, and gradients reach the parameters
    y.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in op.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,params,geometry", CASES)
def test_collapse_float64_exact(name, params, geometry):
    op, _, x = _build_or_skip(name, params, geometry, dtype=torch.float64)
    _perturb_(op)
    op.eval()
    with torch.no_grad():
        diff = (op(x) - op.collapse()(x)).abs().max().item()
    assert diff <= 1e-10


@pytest.mark.parametrize("name,params,geometry", CASES)
def test_gradients_reach_every_trainable_parameter(name, params, geometry):
    op, _, x = _build_or_skip(name, params, geometry)
    _perturb_(op)
    op.train()
    out = op(x)
    loss = (out * torch.randn_like(out)).sum()
    extra = op.extra_loss()
    if extra is not None:
        assert extra.dim() == 0
        loss = loss + extra
    loss.backward()
    for pname, p in op.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient reached {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"


GRADCHECK_GEOMETRIES = [
    ("small", dict(in_channels=2, out_channels=2, kernel_size=3, padding=1), (1, 2, 5, 5)),
    ("small_dw", dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, groups=2), (1, 2, 5, 5)),
    (  # where exact orthogonality exists (a circular conv), so mode 'exact' is gradchecked too
        "small_circular",
        dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="circular"),
        (1, 2, 5, 5),
    ),
]


@pytest.mark.parametrize(
    "name,params",
    [
        pytest.param(name, params, id=f"{name}-{i}")
        for name in operators.names()
        for i, params in enumerate(operators.get(name).example_params)
    ],
)
def test_gradcheck_float64(name, params):
    """On the small dense geometry, or the depthwise one where the dense one is ineligible."""
    reasons = []
    for geometry in GRADCHECK_GEOMETRIES:
        built = _build(name, params, geometry, dtype=torch.float64)
        if not isinstance(built, str):
            break
        reasons.append(f"{geometry[0]}: {built}")
    else:
        pytest.skip(f"{name} {params}: ineligible: " + "; ".join(reasons))
    op, _, x = built
    _perturb_(op)
    op.eval()  # BN in eval keeps the function deterministic for finite differences
    names = [n for n, p in op.named_parameters() if p.requires_grad]
    values = tuple(dict(op.named_parameters())[n].detach().clone().requires_grad_() for n in names)
    x = x.requires_grad_()

    def fn(inp, *param_values):
        return torch.func.functional_call(op, dict(zip(names, param_values)), (inp,))

    assert torch.autograd.gradcheck(fn, (x, *values), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_from_conv_reuses_plain_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    op = operators.get("conv").from_conv(conv)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(op(x), conv(x))
    assert copy.deepcopy(op).collapse().weight.data_ptr() != op.weight.data_ptr()


@pytest.mark.parametrize("name", operators.names())
def test_every_example_parameter_set_is_eligible_somewhere(name):
    """The contract tests skip ineligible combinations; this keeps a skip from hiding an operator (or one of its
    example settings) that no geometry accepts any more."""
    cls = operators.get(name)
    for params in cls.example_params:
        eligible = [g[0] for g in GEOMETRIES if cls.eligibility(ConvSpec.create(**g[1]), **params) is None]
        assert eligible, f"{name} {params}: no contract geometry is eligible"
