"""Triton backend of the watermark ops (references: ``pydecode.ops.watermark``:
``watermark_hash_bias_torch``, ``watermark_scatter_bias_torch``).

* ``watermark_hash_bias`` (pydecode's ``"pydecode-hash"`` scheme): one pass over the row, 2-D
  grid (rows x vocabulary blocks). Each program derives the row's context word from the key
  and the previous tokens (a few scalar hashes), then tests every column's membership in
  registers: ``mix(ctx ^ v * 0x9E3779B9) < threshold``, all in uint32 arithmetic that wraps
  modulo 2**32 as the definition says. No greenlist is materialised.
* ``watermark_scatter_bias`` (transformers' schemes: greenlist ids computed on the host): the
  float32 copy (``_copy_rows``) then the bias added at each listed id by a compare-and-swap
  loop. A repeated id gets one addition per listing, like the reference's
  ``index_put_(accumulate=True)``, and since every addend of a column is the same float the
  order of the additions cannot matter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register

from ._common import launch
from ._copy_rows import float32_copy, load_f32, tile

_MASK32 = 0xFFFFFFFF


@triton.jit
def _mix32(x):
    # Chris Wellons' "lowbias32" on uint32 (multiplications wrap modulo 2**32).
    x = x ^ (x >> 16)
    x = x * tl.full((), 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full((), 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


# `stride_b` and `vocab` specialised, CONTIG constexpr: vector loads and stores (see _copy_rows).
@triton.jit(do_not_specialize=["batch", "stride_v", "prev_sb", "prev_sl", "width", "ctx0"])
def _watermark_hash_kernel(
    x_ptr, stride_b, stride_v, out_ptr, batch, vocab, prev_ptr, prev_sb, prev_sl, width, thr_ptr, bias_ptr, ctx0,
    CONTIG: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """``ctx0`` = ``mix(mix(key lo) ^ key hi)`` as a signed 32-bit value (its bits are the word)."""
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = (row_ids < batch)[:, None]
    rows = row_ids.to(tl.int64)[:, None]
    cols = (tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK))[None, :]
    ok = row_ok & (cols < vocab)
    ctx = tl.zeros([ROWS, 1], dtype=tl.uint32) + ctx0.to(tl.int32).to(tl.uint32, bitcast=True)
    for j in range(0, width):
        t = tl.load(prev_ptr + rows * prev_sb + j * prev_sl, mask=row_ok, other=0).to(tl.int64)
        ctx = _mix32(ctx ^ (t & 0xFFFFFFFF).to(tl.uint32))
    spread = cols.to(tl.uint32) * tl.full((), 0x9E3779B9, tl.uint32)
    threshold = tl.load(thr_ptr + rows, mask=row_ok, other=0)
    green = _mix32(ctx ^ spread).to(tl.int64) < threshold
    if CONTIG:
        x = load_f32(x_ptr + rows * stride_b + cols, ok)
    else:
        x = load_f32(x_ptr + rows * stride_b + cols * stride_v, ok)
    x = tl.where(green, x + tl.load(bias_ptr + rows, mask=row_ok, other=0.0), x)
    tl.store(out_ptr + rows * vocab + cols, x, mask=ok)


@triton.jit(do_not_specialize=["batch", "vocab", "ids_sb", "ids_sl", "count"])
def _scatter_bias_kernel(
    out_ptr, batch, vocab, ids_ptr, ids_sb, ids_sl, count, bias_ptr, scratch_ptr,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """``out[row, id] += bias[row]`` for every listed id, as a compare-and-swap loop on the float's
    bits: each addition is one IEEE ``add.f32`` of the current value (a float atomic add may flush
    subnormals to zero), and a repeated id retries until each of its additions has landed.
    ``out`` is int32-typed (the float32 result's bits); lanes with nothing to add spin on their own
    ``scratch`` word, swapping a value for itself (``atomic_cas`` takes no mask).

    Every failed swap means another listing of the same id landed, so a lane needs at most
    ``count`` rounds; the loop stops there whatever the lanes report. That bound matters if a tile
    were smaller than the threads running it: triton then gives the copies of an element held by
    other threads a 0 for the swap's result (only one thread swaps), so their flags would stay
    set. The launcher sizes tiles to avoid that (at least 32 x num_warps elements); the bound is
    the backstop, and the memory effects are right in either case (only swaps that succeed
    write, each adding ``bias`` once to the value it read)."""
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = (row_ids < batch)[:, None]
    rows = row_ids.to(tl.int64)[:, None]
    pos = (tl.program_id(1) * BLOCK + tl.arange(0, BLOCK))[None, :]
    ok = row_ok & (pos < count)
    v = tl.load(ids_ptr + rows * ids_sb + pos.to(tl.int64) * ids_sl, mask=ok, other=-1).to(tl.int64)
    pending = ok & (v >= 0) & (v < vocab)
    b = tl.load(bias_ptr + rows, mask=row_ok, other=0.0)
    spare = scratch_ptr + tl.arange(0, ROWS)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]
    target = tl.where(pending, out_ptr + rows * vocab + v, spare)
    old = tl.load(target)
    rounds = 0
    while (tl.max(tl.max(pending.to(tl.int32), axis=1), axis=0) > 0) & (rounds < count):
        rounds += 1
        new = tl.where(pending, (old.to(tl.float32, bitcast=True) + b).to(tl.int32, bitcast=True), old)
        seen = tl.atomic_cas(target, old, new, sem="relaxed")
        pending = pending & (seen != old)
        target = tl.where(pending, target, spare)
        old = tl.where(pending, seen, tl.load(spare))


# --------------------------------------------------------------------------- launchers
def _mix32_py(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def _signed32(x: int) -> int:
    return x - (1 << 32) if x >= 1 << 31 else x


@register("watermark_hash_bias", "triton")
def watermark_hash_bias_triton(
    logits: torch.Tensor,
    prev_tokens: torch.Tensor,
    threshold: torch.Tensor,
    bias: torch.Tensor,
    hashing_key: int,
) -> torch.Tensor:
    batch, vocab = logits.shape
    out = torch.empty((batch, vocab), dtype=torch.float32, device=logits.device)
    if batch == 0 or vocab == 0:
        return out
    # Passed as a signed 32-bit int so triton always types it i32 (one compiled kernel).
    ctx0 = _signed32(_mix32_py(_mix32_py(hashing_key & _MASK32) ^ ((hashing_key >> 32) & _MASK32)))
    width = prev_tokens.shape[1]
    prev = prev_tokens if prev_tokens.numel() else threshold.view(-1, 1)  # never a null pointer
    rows, block = tile(batch, vocab, logits.device, 2048)
    launch(_watermark_hash_kernel)[(triton.cdiv(batch, rows), triton.cdiv(vocab, block))](
        logits, logits.stride(0), logits.stride(1), out, batch, vocab, prev, prev.stride(0), prev.stride(1), width,
        threshold.to(torch.int64).contiguous(), bias.to(torch.float32).contiguous(), ctx0,
        CONTIG=logits.stride(1) == 1, ROWS=rows, BLOCK=block, num_warps=4,
    )
    return out


_SCRATCH: dict[torch.device, torch.Tensor] = {}


def _scratch(device: torch.device, words: int) -> torch.Tensor:
    """int32 words the scatter kernel's idle lanes swap in place (their values never matter)."""
    buf = _SCRATCH.get(device)
    if buf is None or buf.numel() < words:
        buf = _SCRATCH[device] = torch.zeros(max(words, 1024), dtype=torch.int32, device=device)
    return buf


@register("watermark_scatter_bias", "triton")
def watermark_scatter_bias_triton(logits: torch.Tensor, green_ids: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    out = float32_copy(logits)
    batch, vocab = logits.shape
    count = green_ids.shape[1]
    if batch == 0 or vocab == 0 or count == 0:
        return out
    rows, block = tile(batch, max(count, 32), logits.device, 1024)
    # One element per thread at least (see the kernel): 32 to 1024 elements, 1 to 4 warps.
    warps = max(1, min(4, rows * block // 32))
    launch(_scatter_bias_kernel)[(triton.cdiv(batch, rows), triton.cdiv(count, block))](
        out.view(torch.int32), batch, vocab, green_ids, green_ids.stride(0), green_ids.stride(1), count,
        bias.to(torch.float32).contiguous(), _scratch(logits.device, rows * block), ROWS=rows, BLOCK=block,
        num_warps=warps,
    )
    return out
