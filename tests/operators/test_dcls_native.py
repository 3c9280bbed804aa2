"""The DCLS kernel's forward in C (``operators.dcls_native``) against the torch ops and the papers' formula, and
the loader that builds it (``operators.native``). The machine CI runs on has a C compiler, so the C kernel must
build here: a test fails, not skips, when it cannot."""

from __future__ import annotations

import ctypes
import logging
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from operators import dcls_kernel, native
from operators.dcls import DclsConv2d
from operators.dcls_kernel import KernelShape, build_kernel, torch_kernel
from operators.dcls_native import LIBRARY, native_kernel
from tests.operators.test_dcls_kernel import _formula_kernel, _parameters

SHAPES = [
    KernelShape(64, 64, 9, 7, 7),  # the benchmark's dense layer: 256 blocks of 16 filters
    KernelShape(4, 3, 5, 7, 7),  # 12 filters: one partial block
    KernelShape(17, 1, 3, 5, 5),  # 17 filters: a whole block and one filter
    KernelShape(3, 2, 4, 5, 9),  # non-square window
    KernelShape(2, 1, 1, 4, 4),  # one tap, even window
    KernelShape(5, 7, 34, 17, 17),  # many taps, large window
    KernelShape(1, 1, 2, 31, 31),  # the largest window the search samples
]


def _float32(params):
    return [None if p is None else p.detach().float() for p in params]


def test_the_c_kernel_builds_on_this_machine():
    assert LIBRARY.function("dcls_kernel_f32") is not None, LIBRARY.failure


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_c_kernel_equals_the_torch_ops_and_the_formula(interpolation, shape):
    params = _parameters(shape, interpolation, seed=shape.filters, spread_out=3.0)  # taps past the border too
    weight, positions, spreads = _float32(params)
    grid = torch.arange(max(shape.height, shape.width), dtype=torch.float32)
    got = native_kernel(weight, positions, spreads, shape)
    assert got is not None and got.shape == (shape.filters, shape.height * shape.width)
    by_torch = torch_kernel(weight, positions, spreads, grid, shape)
    formula = _formula_kernel(*params, interpolation, shape).reshape(shape.filters, -1).float()
    scale = formula.abs().max().item()
    torch.testing.assert_close(got, by_torch, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(got, formula, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize(
    ("interpolation", "parameter"),
    [
        ("gauss", "weight"),
        ("gauss", "positions"),
        ("gauss", "spreads"),
        ("bilinear", "weight"),
        ("bilinear", "positions"),
    ],
)
def test_nan_in_a_parameter_gives_nan_where_the_torch_ops_do(interpolation, parameter):
    """A diverged parameter must show in the kernel (a NaN loss fails the trial), never be clamped away."""
    shape = KernelShape(5, 4, 3, 7, 7)
    weight, positions, spreads = _float32(_parameters(shape, interpolation, seed=2))
    values = {"weight": weight, "positions": positions, "spreads": spreads}[parameter]
    values.view(-1)[7] = math.nan
    grid = torch.arange(7, dtype=torch.float32)
    got = native_kernel(weight, positions, spreads, shape)
    expected = torch_kernel(weight, positions, spreads, grid, shape)
    assert torch.isnan(expected).any()
    assert torch.equal(torch.isnan(got), torch.isnan(expected))


def test_non_contiguous_parameters_are_read_by_shape():
    shape = KernelShape(6, 4, 5, 5, 5)
    weight, positions, spreads = _float32(_parameters(shape, "gauss", seed=4))
    strided = positions.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # same values, other strides
    assert not strided.is_contiguous()
    expected = native_kernel(weight, positions, spreads, shape)
    torch.testing.assert_close(native_kernel(weight, strided, spreads, shape), expected, rtol=0, atol=0)


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_the_operator_takes_the_c_path_on_float32_cpu_and_the_torch_ops_otherwise(interpolation, monkeypatch):
    calls = []

    def counted(*args):
        calls.append(args[0].dtype)
        return torch_kernel(*args)

    monkeypatch.setattr(dcls_kernel, "torch_kernel", counted)
    torch.manual_seed(0)
    op = DclsConv2d(8, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5, interpolation=interpolation)
    x = torch.randn(2, 8, 9, 9)
    out = op(x)
    assert calls == []  # built in C
    out.square().sum().backward()  # the backward is the torch ops' in both cases
    grads = [p.grad.clone() for p in op.parameters()]
    op.zero_grad()
    with native.use_native(False):
        expected = op(x)
        expected.square().sum().backward()
    assert calls == [torch.float32]
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, (p.grad for p in op.parameters())):
        torch.testing.assert_close(got, want)
    op.double()(x.double())
    assert calls == [torch.float32, torch.float64]  # float64 always takes the torch ops


def test_tensors_a_trace_or_another_device_must_see_are_not_handed_to_c():
    plain = torch.ones(3)
    assert native.accepts(plain, torch.nn.Parameter(torch.ones(2)))
    assert not native.accepts(plain.double())
    assert not native.accepts(torch.ones(3, device="meta"))
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(plain)
        assert not native.accepts(fake)
    with FakeTensorMode():  # a dispatch mode is active: even a real tensor stays with torch
        assert not native.accepts(plain)


def test_a_kernel_under_fake_tensors_comes_from_the_torch_ops():
    shape = KernelShape(4, 3, 5, 7, 7)
    params = _float32(_parameters(shape, "gauss", seed=1))
    with FakeTensorMode() as mode:
        fakes = [mode.from_tensor(p) for p in params]
        grid = mode.from_tensor(torch.arange(7, dtype=torch.float32))
        kernel = build_kernel(*fakes, grid, "gauss", shape)
    assert kernel.shape == (4, 3, 7, 7)


def test_the_library_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    library = native.Library("dcls_kernel", LIBRARY.signatures)
    assert library.function("dcls_kernel_f32") is not None
    (built,) = tmp_path.glob("dcls_kernel-*.so")
    stamp = built.stat().st_mtime_ns
    again = native.Library("dcls_kernel", LIBRARY.signatures)
    assert again.function("dcls_kernel_f32") is not None
    assert built.stat().st_mtime_ns == stamp and list(tmp_path.iterdir()) == [built]


def test_without_a_compiler_the_library_warns_once_and_callers_use_torch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    library = native.Library("dcls_kernel", LIBRARY.signatures)
    with caplog.at_level(logging.WARNING, logger="operators.native"):
        assert library.function("dcls_kernel_f32") is None
        assert library.function("dcls_kernel_f32") is None
    (record,) = caplog.records
    assert record.getMessage() == (
        "operators: native dcls_kernel unavailable, using torch ops instead (slower on the CPU): "
        "no C compiler ('no-such-compiler' is not on PATH)"
    )
    assert "no-such-compiler" in library.failure


def test_a_failed_build_raises_with_the_compilers_message(tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("int f(void) { return undeclared; }\n")
    with pytest.raises(RuntimeError, match="cc failed on broken.c: (?s:.*)undeclared"):
        native.build(source, "cc", tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.so"))


def test_native_kernels_can_be_turned_off():
    with native.use_native(False):
        assert not native.native_enabled()
        assert LIBRARY.function("dcls_kernel_f32") is None
    assert native.native_enabled()


def test_the_compiler_is_a_command_line_as_cc_is(tmp_path):
    """``$CC`` may carry words of its own (``ccache gcc``, ``cc -m64``); a build with another command line is
    another library in the cache."""
    source = tmp_path / "answer.c"
    source.write_text("int answer(void) { return ANSWER; }\n")
    built = native.build(source, "cc -DANSWER=42", tmp_path / "cache")
    assert ctypes.CDLL(str(built)).answer() == 42
    assert native.build(source, "cc -DANSWER=7", tmp_path / "cache") != built
