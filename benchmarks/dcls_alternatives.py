"""Ways to do the two costliest steps of the DCLS kernel construction that were tried and not kept, against the way
``operators/dcls_kernel.py`` does them, for the dense 64->64 layer of ``bench_dcls.py`` (K = 9 taps, a 7x7
window, N = 4096 filters).

- ``contract``: ``kernel[n, h, w] = sum_k rows[k, h, n] * cols[k, w, n]``, ending in the conv's (N, H, W) layout:
  - ``blocks of B`` (kept, B = 128 by ``KernelShape.block``): one multiply-add per tap into an (N / B, H, W, B)
    sum, then each block's (H * W, B) tile transposed; other B for comparison;
  - ``taps_then_transpose``: one multiply-add per tap into an (H, W, N) sum, then one 2-D transposed copy (the same
    as one block of all N filters);
  - ``bmm``: ``torch.bmm`` over the N filters, (H, K) @ (K, W) each;
  - ``einsum``: ``torch.einsum("nhk,nkw->nhw")``;
  - ``taps_into_conv_layout``: the multiply-adds straight into (N, H, W), profiles laid out (K, N, S);
- ``conv weight``: a 7x7 conv at batch 1 with the kernel in the conv's layout (kept), against the kernel handed
  over as an (H, W, O, I) tensor seen through a permuted view (the conv copies it first).

Each figure is the median of ``--rounds`` blocks of calls, microseconds, on torch's threads.

    python benchmarks/dcls_alternatives.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from operators.dcls_kernel import KernelShape, blocked

COUNT, SIZE, OUT, IN = 9, 7, 64, 64
FILTERS = OUT * IN
KEPT_BLOCK = KernelShape(OUT, IN, COUNT, SIZE, SIZE).block


def median_us(fn: Callable[[], object], rounds: int, calls: int = 20) -> float:
    fn()
    blocks = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - start) / calls)
    return statistics.median(blocks) * 1e6


def contraction_variants() -> dict[str, Callable[[], torch.Tensor]]:
    rows, cols = torch.rand(COUNT, SIZE, FILTERS), torch.rand(COUNT, SIZE, FILTERS)
    summed = torch.empty(SIZE, SIZE, FILTERS)
    row_taps, col_taps = rows.unsqueeze(2).unbind(0), cols.unsqueeze(1).unbind(0)

    def taps_then_transpose() -> torch.Tensor:
        torch.mul(row_taps[0], col_taps[0], out=summed)
        for row, col in zip(row_taps[1:], col_taps[1:]):
            summed.addcmul_(row, col)
        return torch.empty(FILTERS, SIZE * SIZE).copy_(summed.view(SIZE * SIZE, FILTERS).t())

    def in_blocks(block: int) -> Callable[[], torch.Tensor]:
        blocks = FILTERS // block
        tiles = torch.empty(blocks, SIZE, SIZE, block)
        row_blocks = blocked(rows, blocks).unsqueeze(3).unbind(0)  # K x (blocks, H, 1, B)
        col_blocks = blocked(cols, blocks).unsqueeze(2).unbind(0)  # K x (blocks, 1, W, B)
        transposed = tiles.view(blocks, SIZE * SIZE, block).transpose(1, 2)

        def contract() -> torch.Tensor:
            torch.mul(row_blocks[0], col_blocks[0], out=tiles)
            for row, col in zip(row_blocks[1:], col_blocks[1:]):
                tiles.addcmul_(row, col)
            return torch.empty(FILTERS, SIZE * SIZE).view(transposed.shape).copy_(transposed)

        return contract

    rows_nhk = rows.permute(2, 1, 0).contiguous()  # (N, H, K)
    cols_nkw = cols.permute(2, 0, 1).contiguous()  # (N, K, W)
    rows_kns = rows.permute(0, 2, 1).contiguous()  # (K, N, H)
    cols_kns = cols.permute(0, 2, 1).contiguous()  # (K, N, W)
    direct = torch.empty(FILTERS, SIZE, SIZE)

    def taps_into_conv_layout() -> torch.Tensor:
        torch.mul(rows_kns[0].unsqueeze(2), cols_kns[0].unsqueeze(1), out=direct)
        for k in range(1, COUNT):
            direct.addcmul_(rows_kns[k].unsqueeze(2), cols_kns[k].unsqueeze(1))
        return direct

    expected = taps_then_transpose().view(FILTERS, SIZE, SIZE)
    variants = {
        f"blocks of {KEPT_BLOCK} (kept)": in_blocks(KEPT_BLOCK),
        **{f"blocks of {block}": in_blocks(block) for block in (32, 64, 256, 1024) if block != KEPT_BLOCK},
        "taps_then_transpose": taps_then_transpose,
        "bmm": lambda: torch.bmm(rows_nhk, cols_nkw),
        "einsum": lambda: torch.einsum("nhk,nkw->nhw", rows_nhk, cols_nkw),
        "taps_into_conv_layout": taps_into_conv_layout,
    }
    for name, fn in variants.items():  # all compute the same kernel
        torch.testing.assert_close(fn().view(FILTERS, SIZE, SIZE), expected, rtol=1e-5, atol=1e-5, msg=name)
    return variants


def conv_weight_variants() -> dict[str, Callable[[], torch.Tensor]]:
    x = torch.randn(1, IN, 32, 32)
    kernel = torch.randn(OUT, IN, SIZE, SIZE)
    hwoi = kernel.permute(2, 3, 0, 1).contiguous()  # the construction's (H, W, N) order
    return {
        "conv layout (kept)": lambda: F.conv2d(x, kernel, padding=SIZE // 2),
        "permuted view of (H, W, O, I)": lambda: F.conv2d(x, hwoi.permute(2, 3, 0, 1), padding=SIZE // 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}; medians of {args.rounds} blocks, microseconds")
    for title, variants in (("contract", contraction_variants()), ("conv weight", conv_weight_variants())):
        for name, fn in variants.items():
            print(f"{title:12s} {name:30s} {median_us(fn, args.rounds):9.0f}")


if __name__ == "__main__":
    main()
