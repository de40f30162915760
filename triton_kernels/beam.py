"""Triton backend of ``beam_topk`` (reference: ``pydecode.ops.beam.beam_topk_torch``).

One program per beam row: the log-softmax statistics (max, sum of exponentials), the row's
``min(k, vocab)``-th largest score key by radix select (4 histogram passes, no sort), then one
pass that writes the row's top candidates in index order (all scores above the k-th, then the
lowest-index ties). The merge of ``num_beams * k`` candidates per batch item is a torch top-k
over the same unique 64-bit keys as the reference (score key, then lowest flat index), so the
ranking and tie rule are the reference's. Scores are ``(x - max) - log(sum)`` + beam score,
torch's log_softmax formula; the sum is taken in another order than torch's, so scores can
differ from the reference in the last bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register
from pydecode.ops.beam import _LOW32, _MAX_FLAT, _score_key

from ._common import block_for, float_key, interpreting, precise_log, precise_log_available, rows_2d


@triton.jit
def _scores(x, m, log_z, bonus, bad, LOG_SOFTMAX: tl.constexpr):
    if LOG_SOFTMAX:
        s = ((x - m) - log_z) + bonus
        return tl.where(bad, float("nan"), s)
    else:
        return x + bonus


@triton.jit(do_not_specialize=["stride", "vocab", "k_row"])
def _beam_row_topk_kernel(
    x_ptr, stride, vocab, beam_scores_ptr, k_row, out_scores_ptr, out_tokens_ptr,
    LOG_SOFTMAX: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = x_ptr + row * stride
    bonus = tl.load(beam_scores_ptr + row).to(tl.float32)
    neg_inf = float("-inf")

    m = tl.full((), neg_inf, tl.float32)
    log_z = tl.full((), 0.0, tl.float32)
    bad = tl.full((), 0, tl.int1)
    if LOG_SOFTMAX:
        n_nan = tl.full((), 0, tl.int32)
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(row_ptr + cols, mask=cols < vocab, other=neg_inf).to(tl.float32)
            n_nan += tl.sum((x != x).to(tl.int32), axis=0)
            m = tl.maximum(m, tl.max(tl.where(x != x, neg_inf, x), axis=0))
        z = tl.full((), 0.0, tl.float32)
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(row_ptr + cols, mask=cols < vocab, other=neg_inf).to(tl.float32)
            z += tl.sum(tl.exp(x - m), axis=0)
        log_z = precise_log(z, PRECISE)
        # torch's log_softmax of a row with NaN, with +inf or with nothing finite is all NaN
        bad = (n_nan > 0) | (m == float("inf")) | (m == neg_inf)

    # radix select of the k_row-th largest score key (NaN ranks highest)
    bins = tl.arange(0, 512)
    prefix = tl.full((), 0, tl.int64)
    remaining = tl.full((), 0, tl.int32) + k_row
    for p in tl.static_range(4):
        shift = 24 - 8 * p
        hist = tl.zeros([512], dtype=tl.int32)
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < vocab
            x = tl.load(row_ptr + cols, mask=mask, other=neg_inf).to(tl.float32)
            ukey = float_key(_scores(x, m, log_z, bonus, bad, LOG_SOFTMAX)).to(tl.int64) + 2147483648
            digit = ((ukey >> shift) & 255).to(tl.int32)
            match = mask & ((ukey >> (shift + 8)) == prefix)
            hist += tl.histogram(tl.where(match, digit, 256), 512)
        hist = tl.where(bins < 256, hist, 0)
        suffix = tl.sum(hist, axis=0) - tl.cumsum(hist, axis=0) + hist
        chosen = tl.max(tl.where((bins < 256) & (suffix >= remaining), bins, 0), axis=0)
        remaining -= tl.sum(tl.where(bins > chosen, hist, 0), axis=0)
        prefix = (prefix << 8) | chosen.to(tl.int64)
    kth = (prefix - 2147483648).to(tl.int32)
    # `remaining` ties with the k-th key are taken, the lowest indices first; the entries above it
    # fill the first k_row - remaining slots.
    n_above = k_row - remaining
    written_above = tl.full((), 0, tl.int32)
    written_ties = tl.full((), 0, tl.int32)
    out_base = row * k_row
    for start in range(0, vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = tl.load(row_ptr + cols, mask=mask, other=neg_inf).to(tl.float32)
        s = _scores(x, m, log_z, bonus, bad, LOG_SOFTMAX)
        key = float_key(s)
        above = mask & (key > kth)
        tie = mask & (key == kth)
        pos_above = written_above + tl.cumsum(above.to(tl.int32), axis=0) - 1
        pos_tie = written_ties + tl.cumsum(tie.to(tl.int32), axis=0) - 1
        take_tie = tie & (pos_tie < remaining)
        slot = tl.where(above, pos_above, n_above + pos_tie)
        keep = above | take_tie
        tl.store(out_scores_ptr + out_base + slot, s, mask=keep)
        tl.store(out_tokens_ptr + out_base + slot, cols.to(tl.int64), mask=keep)
        written_above += tl.sum(above.to(tl.int32), axis=0)
        written_ties += tl.sum(tie.to(tl.int32), axis=0)


@register("beam_topk", "triton")
def beam_topk_triton(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, apply_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = rows_2d(logits)
    rows, vocab = x.shape
    batch = rows // num_beams
    k_row = min(k, vocab)
    cand_scores = torch.empty((rows, k_row), dtype=torch.float32, device=x.device)
    cand_tokens = torch.empty((rows, k_row), dtype=torch.int64, device=x.device)
    if rows:
        block = block_for(vocab, interpret=interpreting(x))
        _beam_row_topk_kernel[(rows,)](
            x, x.stride(0), vocab, beam_scores.contiguous(), k_row, cand_scores, cand_tokens,
            LOG_SOFTMAX=bool(apply_log_softmax), PRECISE=precise_log_available(x), BLOCK=block,
            num_warps=8 if block >= 1024 else 4,
        )
    # Merge: num_beams * k_row candidates per item, ranked by the reference's unique keys.
    beam_of_row = torch.arange(rows, device=x.device, dtype=torch.int64) % num_beams
    flat = (beam_of_row[:, None] * vocab + cand_tokens).reshape(batch, num_beams * k_row)
    scores = cand_scores.reshape(batch, num_beams * k_row)
    keys = _score_key(scores) * _LOW32 + (_MAX_FLAT - flat)
    _, pos = torch.topk(keys, k, dim=1)
    sel = flat.gather(1, pos)
    return scores.gather(1, pos), sel % vocab, sel // vocab
