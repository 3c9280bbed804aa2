"""Storage for returned kernels, used again only once nothing refers to it (``operators.recycled``)."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from operators.dcls import DclsConv2d
from operators.recycled import RECYCLED, Recycled


def _storage_address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def test_storage_is_used_again_once_the_tensor_is_gone():
    pool = Recycled(limit_bytes=1 << 20)
    like = torch.zeros(1)
    first = pool.empty(like, 4, 5)
    assert first.shape == (4, 5) and first.is_contiguous() and first.dtype == like.dtype
    address = _storage_address(first)
    del first
    second = pool.empty(like, 4, 5)
    assert _storage_address(second) == address
    assert second.grad_fn is None and not second.requires_grad
    assert pool.kept_bytes == 4 * 5 * 4


def test_storage_held_by_a_tensor_a_view_or_an_autograd_graph_is_not_handed_out():
    pool = Recycled(limit_bytes=1 << 20)
    like = torch.zeros(1)
    held = pool.empty(like, 3, 3).fill_(1.0)
    other = pool.empty(like, 3, 3)  # `held` is alive
    assert _storage_address(other) != _storage_address(held)
    view = held.view(-1)
    del held
    third = pool.empty(like, 3, 3)  # the view still refers to the first storage, `other` to the second
    assert _storage_address(third) not in (_storage_address(view), _storage_address(other))
    assert torch.equal(view, torch.ones(9))

    weight = torch.randn(3, 3, requires_grad=True)
    saved = pool.empty(like, 3, 3).copy_(torch.eye(3))
    output = weight @ saved  # matmul saves `saved` for the weight's gradient
    address = _storage_address(saved)
    del saved, view, third, other
    while_graph_alive = [pool.empty(like, 3, 3) for _ in range(3)]
    assert address not in {_storage_address(t) for t in while_graph_alive}
    output.sum().backward()
    torch.testing.assert_close(weight.grad, torch.ones(3, 3))  # d(sum(W @ I))/dW: the saved eye was intact


def test_least_recently_asked_sizes_are_dropped_past_the_limit_and_oversized_ones_not_kept():
    pool = Recycled(limit_bytes=1000)
    like = torch.zeros(1)
    pool.empty(like, 100)  # 400 bytes
    pool.empty(like, 50)  # 200 bytes
    assert pool.kept_bytes == 600
    pool.empty(like, 100)  # asked again: the 400-byte size is now the most recent
    pool.empty(like, 120)  # 480 bytes: the 200-byte size goes
    assert pool.kept_bytes == 880
    big = pool.empty(like, 300)  # 1200 bytes > limit: allocated, not kept
    assert big.numel() == 300 and pool.kept_bytes == 880
    pool.clear()
    assert pool.kept_bytes == 0


def test_off_the_cpu_nothing_is_kept():
    pool = Recycled()
    result = pool.empty(torch.zeros(1, device="meta"), 8, 8)
    assert result.device.type == "meta" and result.shape == (8, 8)
    assert pool.kept_bytes == 0


def test_a_training_loop_reuses_the_kernel_storage_and_gets_the_same_gradients():
    """Two steps of a DCLS layer: the second step's kernel lands in the first's storage once its backward ran, and
    two forwards before one backward (gradient accumulation) each get their own."""
    torch.manual_seed(0)
    layer = DclsConv2d(4, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5)
    x = torch.randn(2, 4, 9, 9)
    addresses = []

    def step() -> torch.Tensor:
        kernel = layer.dense_kernel()
        addresses.append(_storage_address(kernel))
        return F.conv2d(x, kernel, layer.bias, padding=2)

    step().square().sum().backward()
    step().square().sum().backward()
    assert addresses[0] == addresses[1]
    layer.zero_grad()
    accumulated = step().square().sum() + step().square().sum()
    assert addresses[2] != addresses[3]
    accumulated.backward()
    got = {name: p.grad.clone() for name, p in layer.named_parameters()}
    layer.zero_grad()
    with torch.no_grad():
        reference_kernel = layer.dense_kernel().clone()  # a copy outside the pool
    reference = F.conv2d(x, reference_kernel.requires_grad_(), layer.bias, padding=2).square().sum() * 2
    reference.backward()
    kernel_grad = reference_kernel.grad
    expected = torch.autograd.grad(
        layer.dense_kernel(), [layer.weight, layer.positions, layer.spreads], kernel_grad
    )
    for name, want in zip(("weight", "positions", "spreads"), expected):
        torch.testing.assert_close(got[name], want, msg=name)


def test_the_dcls_layer_borrows_from_the_process_pool():
    layer = DclsConv2d(3, 5, 3, padding=1, kernel_count=4, dilated_kernel_size=5)
    RECYCLED.clear()
    layer.dense_kernel()
    assert RECYCLED.kept_bytes == 5 * 3 * 5 * 5 * 4


def test_threads_asking_at_once_never_share_a_storage():
    pool = Recycled(limit_bytes=1 << 20)
    like = torch.zeros(1)
    held: list[torch.Tensor] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        for _ in range(20):
            held.append(pool.empty(like, 16, 16))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(held) == 160
    assert len({_storage_address(t) for t in held}) == 160


def test_the_parameters_gradients_come_back_on_recycled_storage():
    """With gradients set to None between steps (``zero_grad``'s default), each step's gradient of the tap weights,
    positions and spreads lands where the previous step's was; the values are those of a step without the pool."""
    torch.manual_seed(0)
    layer = DclsConv2d(4, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5)
    x = torch.randn(2, 4, 9, 9)
    names = ("weight", "positions", "spreads")
    addresses = []
    for _ in range(2):
        layer.zero_grad(set_to_none=True)
        layer(x).square().sum().backward()
        addresses.append({name: _storage_address(getattr(layer, name).grad) for name in names})
    assert addresses[0] == addresses[1]
    got = {name: getattr(layer, name).grad.clone() for name in names}
    limit = RECYCLED.limit_bytes
    try:
        RECYCLED.limit_bytes = 0  # no room: every result a new tensor
        layer.zero_grad(set_to_none=True)
        layer(x).square().sum().backward()
    finally:
        RECYCLED.limit_bytes = limit
    for name in names:
        torch.testing.assert_close(got[name], getattr(layer, name).grad, rtol=0, atol=0, msg=name)
