"""Triton backend of ``philox_uniform`` (reference: ``pydecode.ops.philox.philox_uniform_torch``).

``tl.philox`` is standard Philox4x32-10 with key ``(seed lo, seed hi)``, so word 0 for the
counter ``(token, offset lo, offset hi, stream)`` is the same draw as the C++ and torch
backends. Seeds and offsets are read from device tensors, so a captured CUDA graph replays
with new values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register

from ._common import launch


# `stream` is not specialised: triton would turn a 1 into a constexpr, which has no .to().
@triton.jit(do_not_specialize=["stream"])
def _philox_uniform_kernel(seed_ptr, offset_ptr, out_ptr, vocab, stream, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    seed = tl.load(seed_ptr + row)
    offset = tl.load(offset_ptr + row)
    c0 = cols.to(tl.uint32)
    c1 = tl.full([BLOCK], 0, tl.uint32) + (offset & 0xFFFFFFFF).to(tl.uint32)
    c2 = tl.full([BLOCK], 0, tl.uint32) + ((offset >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c3 = tl.full([BLOCK], 0, tl.uint32) + stream.to(tl.uint32)
    w0, _, _, _ = tl.philox(seed, c0, c1, c2, c3)
    u = ((w0 >> 9).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
    tl.store(out_ptr + row.to(tl.int64) * vocab + cols, u, mask=cols < vocab)


@register("philox_uniform", "triton")
def philox_uniform_triton(seed: torch.Tensor, offset: torch.Tensor, vocab: int, stream: int) -> torch.Tensor:
    rows = seed.shape[0]
    out = torch.empty(rows, vocab, dtype=torch.float32, device=seed.device)
    if rows == 0 or vocab == 0:
        return out
    block = min(1024, triton.next_power_of_2(vocab))
    grid = (rows, triton.cdiv(vocab, block))
    launch(_philox_uniform_kernel)[grid](seed.contiguous(), offset.contiguous(), out, vocab, stream, BLOCK=block)
    return out
