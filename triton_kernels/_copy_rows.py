"""What the sparse-update kernels (penalties, n-gram masks, sequence bias, watermark) share:

* the dense pass they start from, a new contiguous float32 ``(batch, vocab)`` copy of logits of
  any dtype and strides (a 2-D grid of ``ROWS x BLOCK`` tiles, so batch 1 still spreads over
  every SM); the sparse kernel that follows on the same stream then touches only the history's
  columns, so an op costs one read and one write of the row plus O(history) per row;
* :func:`load_f32`, an exact widening load;
* :func:`tile`, the ``(ROWS, BLOCK)`` tile of a kernel: one row per program on a GPU unless the
  rows are short, and wide tiles under the interpreter, where every program costs a
  Python-level pass over each op (a 1024 x 40 copy takes ~3 s one row per program, ~10 ms in
  one tile).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import launch


@triton.jit
def load_f32(ptrs, mask):
    """``tl.load(...).to(float32)`` with bfloat16 widened by moving its bits into the top half of a
    float32 word: exact for every value, where triton 3.9's interpreter flushes bfloat16
    subnormals to zero in its cast (on a GPU both are one shift)."""
    x = tl.load(ptrs, mask=mask, other=0.0)
    if x.dtype == tl.bfloat16:
        y = (x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        y = x.to(tl.float32)
    return y


# `stride_b` and `vocab` stay specialised (triton notes when they are multiples of 16): with a
# unit column stride (CONTIG) that is what lets it prove rows 16-byte aligned and issue vector
# loads and stores; unknown strides would make every access a scalar one.
@triton.jit(do_not_specialize=["batch", "stride_v"])
def _copy_rows_kernel(
    x_ptr, stride_b, stride_v, out_ptr, batch, vocab,
    ADD_ZERO: tl.constexpr, CONTIG: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    rows = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)[:, None]
    cols = (tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK))[None, :]
    ok = (rows < batch) & (cols < vocab)
    if CONTIG:
        x = load_f32(x_ptr + rows * stride_b + cols, ok)
    else:
        x = load_f32(x_ptr + rows * stride_b + cols * stride_v, ok)
    if ADD_ZERO:
        # `x + 0.0` turns -0.0 into +0.0: what `scores + bias` gives on untouched columns.
        x = x + 0.0
    tl.store(out_ptr + rows * vocab + cols, x, mask=ok)


def tile(batch: int, n: int, device: torch.device, gpu_lanes: int) -> tuple[int, int]:
    """``(ROWS, BLOCK)``, powers of two: ``BLOCK`` covers ``n`` columns (up to ``gpu_lanes`` on a
    GPU, 16384 under the interpreter) and ``ROWS`` fills the rest of the tile with rows."""
    lanes = gpu_lanes if device.type == "cuda" else 16384
    block = max(16, min(lanes, triton.next_power_of_2(max(n, 1))))
    rows = max(1, min(triton.next_power_of_2(max(batch, 1)), lanes // block))
    return rows, block


def float32_copy(logits: torch.Tensor, *, add_zero: bool = False) -> torch.Tensor:
    """A new contiguous float32 copy of 2-D ``logits`` (``+ 0.0`` on every entry when ``add_zero``)."""
    batch, vocab = logits.shape
    out = torch.empty((batch, vocab), dtype=torch.float32, device=logits.device)
    if batch == 0 or vocab == 0:
        return out
    rows, block = tile(batch, vocab, logits.device, 2048)
    grid = (triton.cdiv(batch, rows), triton.cdiv(vocab, block))
    launch(_copy_rows_kernel)[grid](
        logits, logits.stride(0), logits.stride(1), out, batch, vocab,
        ADD_ZERO=add_zero, CONTIG=logits.stride(1) == 1, ROWS=rows, BLOCK=block, num_warps=4,
    )
    return out
