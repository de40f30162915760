"""Triton backend of ``beam_topk`` (reference: ``pydecode.ops.beam.beam_topk_torch``).

One program per beam row: the log-softmax statistics (max, sum of exponentials), the row's
``min(k, vocab)``-th largest score key by radix select (up to 4 histogram passes, no sort), then one
pass that writes the row's top candidates in index order (all scores above the k-th, then the
lowest-index ties). Early tile: once the scores at or above the select's chosen key prefix number
at most 512, one pass copies them (with their columns) to a per-row tile and the later digits and
the write run on it, so a usual row is read 2 times after the statistics instead of 5. A logit
tile comes first (the entries whose logit reaches the class bound of rank k, _common.class_maxima,
taken in the statistics pass): 3 reads of the row in all with log-softmax, 2 without, and no
histogram of the row.
The merge of ``num_beams * k`` candidates per batch item is a torch top-k over the same unique
64-bit keys as the reference (score key, then lowest flat index), so the
ranking and tie rule are the reference's. Scores are ``(x - max) - log(sum)`` + beam score,
torch's log_softmax formula; the sum is taken in fixed point (``_row_mass``: exact, so independent
of the order) rather than torch's float order, so scores can differ from the reference in the last
bits, and are closer to the exact log-softmax than torch's CPU float32 sum at V = 152064. On a GPU the
exponentials and the log are libdevice's (``precise_exp`` / ``precise_log``: tl.exp's approximate
ex2 would move the sum by a few ulps).

Small batches (rows too few to fill the GPU, triton_kernels/_common.py ``split_count``) spread the
row's reads over several programs, ``_beam_split_kernel``: each slice's statistics, class maxima and
a copy of its logits at or above its own class bound (_common.split_record), then with log-softmax
its fixed-point sum; ``_beam_row_topk_kernel`` (``SPLIT``) merges them (maxima, integer sums: exact),
gathers the logit tile from the slices' copies (_common.gather_bounded) and finishes each row as
above. 2 launches without log-softmax, 3 with it; rows whose tile does not fit or whose check fails
take the radix select over the row. The output is the one-program kernel's, bit for bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register
from pydecode.ops.beam import _LOW32, _MAX_FLAT, _score_key

from ._common import (
    BEAM_SPLIT_MIN_VOCAB,
    CLASSES,
    append_selected,
    block_for,
    class_bound,
    class_maxima,
    early_tile,
    float_key,
    gather_bounded,
    interpreting,
    launch,
    merged_stats,
    precise_exp,
    precise_log,
    precise_log_available,
    prefix_at_least,
    radix_digit,
    row_programs,
    row_stages,
    rows_2d,
    split_count,
    split_record,
    split_rows,
    tile_digit_hist,
    tile_select,
)

# Fixed-point unit of the log-softmax sum: 2^-40 (sums of up to 2^23 weights <= 1 fit in int64).
_MASS_ONE = tl.constexpr(1099511627776.0)
# Entries of a row's early tile (_beam_row_topk_kernel): rows whose k_row-th score lies among at
# most this many candidates finish the select and the write on it.
_TILE = 512


@triton.jit
def _scores(x, m, log_z, bonus, bad, LOG_SOFTMAX: tl.constexpr):
    if LOG_SOFTMAX:
        s = ((x - m) - log_z) + bonus
        return tl.where(bad, float("nan"), s)
    else:
        return x + bonus


@triton.jit
def _row_stats(row_ptr, lo, hi, BLOCK: tl.constexpr, CLASSES: tl.constexpr, NC: tl.constexpr, STAGES: tl.constexpr):
    """(maximum of the non-NaN entries, -inf if none; NaN count) over columns [lo, hi), and with
    CLASSES the NC column classes' logit key maxima (_common.class_maxima; else zeros)."""
    neg_inf = float("-inf")
    # per block position, reduced once after the loop (no cross-warp reduction per step)
    m_pos = tl.full([BLOCK], neg_inf, tl.float32)
    nan_pos = tl.zeros([BLOCK], dtype=tl.int32)
    kmax = tl.full([BLOCK], -2147483648, tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = tl.load(row_ptr + cols, mask=mask, other=neg_inf).to(tl.float32)
        nan_pos += (x != x).to(tl.int32)
        m_pos = tl.maximum(m_pos, tl.where(x != x, neg_inf, x))
        if CLASSES:  # columns past hi load as -inf: a lower bound too
            kmax = tl.maximum(kmax, float_key(x))
    return tl.max(m_pos, axis=0), tl.sum(nan_pos, axis=0), class_maxima(kmax, BLOCK, NC)


@triton.jit
def _row_mass(row_ptr, lo, hi, m, PRECISE: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """Sum over [lo, hi) of exp(x - m) in fixed point (int64 units of 2^-40, each weight truncated):
    integer sums are exact, so the total does not depend on the order or on how the row is split.
    NaN weights (rows whose scores are all NaN anyway) count 0."""
    z = tl.full((), 0, tl.int64)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        w = precise_exp(x - m, PRECISE)
        z += tl.sum((tl.where(w == w, w, 0.0) * _MASS_ONE).to(tl.int64), axis=0)
    return z


@triton.jit
def _log_mass(z, PRECISE: tl.constexpr):
    return precise_log(z.to(tl.float32) * (1.0 / _MASS_ONE), PRECISE)


@triton.jit
def _digit_hist(row_ptr, lo, hi, m, log_z, bonus, bad, shift, prefix, LOG_SOFTMAX: tl.constexpr,
                BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """Histogram over [lo, hi) of the score keys' 8-bit digit at ``shift`` among the keys whose
    higher digits are ``prefix`` (others: an ignored bin)."""
    hist = tl.zeros([512], dtype=tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        ukey = float_key(_scores(x, m, log_z, bonus, bad, LOG_SOFTMAX)).to(tl.int64) + 2147483648
        digit = ((ukey >> shift) & 255).to(tl.int32)
        match = mask & ((ukey >> (shift + 8)) == prefix)
        hist += tl.histogram(tl.where(match, digit, 256), 512)
    return hist


@triton.jit
def _write_block(s, cols, mask, kth, n_above, remaining, written_above, written_ties, out_scores_ptr, out_tokens_ptr,
                 out_base):
    """_write_top's step over one block of scores ``s`` at columns ``cols`` (ascending); returns
    the updated (written_above, written_ties)."""
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
    return written_above + tl.sum(above.to(tl.int32), axis=0), written_ties + tl.sum(tie.to(tl.int32), axis=0)


@triton.jit
def _write_top(row_ptr, lo, hi, m, log_z, bonus, bad, kth, n_above, remaining, written_above, written_ties,
               out_scores_ptr, out_tokens_ptr, out_base, LOG_SOFTMAX: tl.constexpr, BLOCK: tl.constexpr,
               STAGES: tl.constexpr):
    """Write the candidates of [lo, hi): scores above the k-th key at slots ``written_above`` on
    (the earlier columns' count), ties with it after the ``n_above`` slots, lowest index first,
    while fewer than ``remaining`` ties are taken (``written_ties`` of them before ``lo``)."""
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        written_above, written_ties = _write_block(_scores(x, m, log_z, bonus, bad, LOG_SOFTMAX), cols, mask, kth,
                                                   n_above, remaining, written_above, written_ties, out_scores_ptr,
                                                   out_tokens_ptr, out_base)


@triton.jit
def _copy_top_scores(row_ptr, lo, hi, m, log_z, bonus, bad, prefix, shift, dst_s_ptr, dst_i_ptr,
                     LOG_SOFTMAX: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, BY_LOGIT: tl.constexpr,
                     STAGES: tl.constexpr):
    """Copy the scores of columns [lo, hi) whose unsigned key shifted right by ``shift`` is >=
    ``prefix`` (with their columns, in column order) to a CAP-entry tile: the score's key, or with
    BY_LOGIT the logit's. Returns how many there are (past CAP only the first CAP are written: the
    caller checks) and, with BY_LOGIT, the largest logit left out (else -inf)."""
    written = tl.full((), 0, tl.int32)
    below = tl.full((), float("-inf"), tl.float32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        s = _scores(x, m, log_z, bonus, bad, LOG_SOFTMAX)
        if BY_LOGIT:
            sel = mask & prefix_at_least(x, shift, prefix)
            below = tl.maximum(below, tl.max(tl.where(mask & (~sel), x, float("-inf")), axis=0))
        else:
            sel = mask & prefix_at_least(s, shift, prefix)
        written = append_selected(s, cols, sel, written, dst_s_ptr, dst_i_ptr, CAP)
    return written, below


@triton.jit(do_not_specialize=["n_rows", "k_row", "splits"])
def _beam_row_topk_kernel(
    x_ptr, stride, vocab, n_rows, beam_scores_ptr, k_row, out_scores_ptr, out_tokens_ptr, tile_s_ptr, tile_i_ptr,
    parts_ptr, mass_ptr, part_x_ptr, part_i_ptr, part_n_ptr, splits,
    LOG_SOFTMAX: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, EARLY: tl.constexpr,
    NC: tl.constexpr, NCK: tl.constexpr, SPLIT: tl.constexpr, FOLD: tl.constexpr, REC: tl.constexpr,
    UNION: tl.constexpr, STAGES: tl.constexpr,
):
    for program_row in range(tl.program_id(0), n_rows, tl.num_programs(0)):  # persistent: see row_programs
        row = tl.full((), 0, tl.int64) + program_row  # int64 (the interpreter gives a Python int)
        row_ptr = x_ptr + row * stride
        bonus = tl.load(beam_scores_ptr + row).to(tl.float32)

        m = tl.full((), float("-inf"), tl.float32)
        n_nan = tl.full((), 0, tl.int32)
        z = tl.full((), 0, tl.int64)  # the log-softmax sum, fixed point
        log_z = tl.full((), 0.0, tl.float32)
        bad = tl.full((), 0, tl.int1)
        bins = tl.arange(0, 512)
        cmax = tl.zeros([NC], dtype=tl.int32)
        if SPLIT:  # _beam_split_kernel read the slices: merged here (maxima, integer sums: exact)
            m, n_nan = merged_stats(parts_ptr, row, splits, REC, UNION // FOLD)
            if LOG_SOFTMAX:  # the slices' fixed-point sums, loaded at once
                t = tl.arange(0, UNION // FOLD)
                z = tl.sum(tl.load(mass_ptr + row * splits + t, mask=t < splits, other=0), axis=0)
        elif LOG_SOFTMAX or EARLY:  # with EARLY the statistics pass also takes the logits' class maxima
            m, n_nan, cmax = _row_stats(row_ptr, 0, vocab, BLOCK, EARLY, NC, STAGES)
            if LOG_SOFTMAX:
                z = _row_mass(row_ptr, 0, vocab, m, PRECISE, BLOCK, STAGES)
        if LOG_SOFTMAX:
            log_z = _log_mass(z, PRECISE)
            # torch's log_softmax of a row with NaN, with +inf or with nothing finite is all NaN
            bad = (n_nan > 0) | (m == float("inf")) | (m == float("-inf"))

        tile_s = tile_s_ptr + row * CAP
        tile_i = tile_i_ptr + row * CAP
        kth = tl.full((), 0, tl.int32)
        remaining = tl.full((), 0, tl.int32) + k_row
        listed = tl.full((), 0, tl.int32)
        # Logit tile (EARLY): a score is non-decreasing in the logit, so the entries whose logit reaches
        # the class bound of rank k_row (_common.class_maxima: <= the k_row-th largest logit) hold the
        # top k_row scores. The copy pass takes their scores and the largest logit left out; when they
        # fit the tile the select runs there, and stands if that logit's score is below the k-th
        # score (else rounding tied a score outside the tile with it, and the score select below
        # runs instead): 3 reads of the row in all with log-softmax (statistics, sum, copy), 2 without.
        if EARLY:
            if k_row <= NCK:
                if SPLIT:  # the slices copied their logits at or above their own bounds: gather, then score
                    n, below = gather_bounded(parts_ptr, part_x_ptr, part_i_ptr, part_n_ptr, row, splits, k_row,
                                              tile_s, tile_i, CAP, FOLD, REC, UNION, STAGES)
                    if n <= CAP:
                        tl.debug_barrier()  # the gathered logits are read back by other threads of this program
                        offs = tl.arange(0, CAP)
                        valid = offs < n
                        xs = tl.load(tile_s + offs, mask=valid, other=float("-inf"))
                        tl.store(tile_s + offs, _scores(xs, m, log_z, bonus, bad, LOG_SOFTMAX), mask=valid)
                else:
                    bound = class_bound(cmax, k_row, NC, NCK)
                    n, below = _copy_top_scores(row_ptr, 0, vocab, m, log_z, bonus, bad, bound, 0, tile_s, tile_i,
                                                LOG_SOFTMAX, BLOCK, CAP, True, STAGES)
            else:
                n = tl.full((), CAP + 1, tl.int32)
                below = tl.full((), float("nan"), tl.float32)
            if n <= CAP:
                tl.debug_barrier()  # the tile is read back by other threads of this program
                t_prefix, t_remaining, t_at = tile_select(tile_s, n, tl.full((), 0, tl.int64),
                                                          tl.full((), 0, tl.int32) + k_row, 0, CAP)
                t_kth = (t_prefix - 2147483648).to(tl.int32)
                if float_key(_scores(below, m, log_z, bonus, bad, LOG_SOFTMAX)) < t_kth:
                    kth = t_kth
                    remaining = t_remaining
                    listed = n

        # radix select of the k_row-th largest score key (NaN ranks highest). With EARLY, once the
        # scores whose key prefix is >= the chosen one fit the row's tile, one pass copies them
        # (with their columns, in column order) and the later digits and the write read the tile:
        # the same digits and writes, in 2 reads of the row after the statistics instead of 5.
        if listed == 0:
            prefix = tl.full((), 0, tl.int64)
            at_digit = tl.full((), 0, tl.int32)
            for p in tl.static_range(4):
                if EARLY and p > 0:
                    if (listed == 0) & (k_row - remaining + at_digit <= CAP):
                        listed, unused_below = _copy_top_scores(row_ptr, 0, vocab, m, log_z, bonus, bad, prefix,
                                                                32 - 8 * p, tile_s, tile_i, LOG_SOFTMAX, BLOCK, CAP,
                                                                False, STAGES)
                        tl.debug_barrier()  # the tile is read back by other threads of this program
                if listed > 0:
                    hist = tile_digit_hist(tile_s, listed, 24 - 8 * p, prefix, CAP)
                else:
                    hist = _digit_hist(row_ptr, 0, vocab, m, log_z, bonus, bad, 24 - 8 * p, prefix, LOG_SOFTMAX,
                                       BLOCK, STAGES)
                prefix, remaining, at_digit = radix_digit(hist, bins, prefix, remaining)
            kth = (prefix - 2147483648).to(tl.int32)
        # `remaining` ties with the k-th key are taken, the lowest indices first; the entries above it
        # fill the first k_row - remaining slots.
        zero = tl.full((), 0, tl.int32)
        if listed > 0:
            offs = tl.arange(0, CAP)
            valid = offs < listed
            _write_block(tl.load(tile_s + offs, mask=valid, other=float("-inf")),
                         tl.load(tile_i + offs, mask=valid, other=0), valid, kth, k_row - remaining, remaining, zero,
                         zero, out_scores_ptr, out_tokens_ptr, row * k_row)
        else:
            _write_top(row_ptr, 0, vocab, m, log_z, bonus, bad, kth, k_row - remaining, remaining, zero, zero,
                       out_scores_ptr, out_tokens_ptr, row * k_row, LOG_SOFTMAX, BLOCK, STAGES)


@triton.jit(do_not_specialize=["k_row", "splits"])
def _beam_split_kernel(
    x_ptr, stride, vocab, k_row, parts_ptr, mass_ptr, part_x_ptr, part_i_ptr, part_n_ptr, splits, slice_len,
    PASS: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, NC: tl.constexpr,
    NCS: tl.constexpr, FOLD: tl.constexpr, REC: tl.constexpr, SP2: tl.constexpr, STAGES: tl.constexpr,
):
    """_beam_row_topk_kernel's reads of slice ``program_id(1)`` of row ``program_id(0)``. PASS 0:
    the slice's record (_common.split_record, rank k_row) and a copy of its logits at or above its
    own class bound (with their columns, column order; the largest logit left off in the record's
    slot 3): two reads of the slice, the second from L2. PASS 1 (log-softmax only): the slice's
    fixed-point sum of exp(x - m) under the row's maximum (``mass``), exact in any order."""
    row = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    row_ptr = x_ptr + row * stride
    lo = s * slice_len
    hi = tl.minimum(lo + slice_len, vocab)
    rec = parts_ptr + (row * splits + s) * REC
    if PASS == 0:
        m, n_nan, cmax = _row_stats(row_ptr, lo, hi, BLOCK, True, NC, STAGES)
        bound = split_record(rec, m, n_nan, cmax, k_row, NC, NCS, FOLD)
        dst = (row * splits + s) * CAP
        # the logits themselves: scores without log-softmax with a bonus of -0.0, x + -0.0 == x bit for bit
        n, below = _copy_top_scores(row_ptr, lo, hi, m, 0.0, -0.0, False, bound, 0, part_x_ptr + dst, part_i_ptr + dst,
                                    False, BLOCK, CAP, True, STAGES)
        tl.store(part_n_ptr + row * splits + s, n)
        tl.store(rec + 3, below.to(tl.int32, bitcast=True))
    else:
        m, unused_nan = merged_stats(parts_ptr, row, splits, REC, SP2)
        tl.store(mass_ptr + row * splits + s, _row_mass(row_ptr, lo, hi, m, PRECISE, BLOCK, STAGES))


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
        nck = min(block, CLASSES, _TILE)  # the logit tile's classes
        early = k_row <= _TILE and early_tile()
        stages = row_stages()  # PYDECODE_TRITON_STAGES
        tile_s = torch.empty((rows, _TILE) if early else (1,), dtype=torch.float32, device=x.device)
        tile_i = torch.empty((rows, _TILE) if early else (1,), dtype=torch.int32, device=x.device)
        # the split path serves rows the logit tile serves
        split = early and k_row <= nck
        splits = split_count(rows, vocab, x, min_vocab=BEAM_SPLIT_MIN_VOCAB) if split else 1
        parts, mass, part_x, part_i, part_n = tile_i, cand_tokens, tile_s, tile_i, tile_i  # typed dummies
        fold = 16
        if splits > 1:
            sp = split_rows(rows, vocab, splits, _TILE, x)
            splits, fold, parts, part_x, part_i, part_n = sp.splits, sp.fold, sp.parts, sp.part_x, sp.part_i, sp.part_n
            mass = torch.empty((rows, splits), dtype=torch.int64, device=x.device)
            for p in range(2 if apply_log_softmax else 1):
                launch(_beam_split_kernel)[(rows, splits)](
                    x, x.stride(0), vocab, k_row, parts, mass, part_x, part_i, part_n, splits, sp.slice_len,
                    PASS=p, PRECISE=precise_log_available(x), BLOCK=sp.block, CAP=_TILE, NC=sp.classes,
                    NCS=min(sp.classes, _TILE), FOLD=fold, REC=sp.rec, SP2=triton.next_power_of_2(splits),
                    STAGES=stages,
                    num_warps=8 if sp.block >= 1024 else 4,
                )
        launch(_beam_row_topk_kernel)[(row_programs(rows, x),)](
            x, x.stride(0), vocab, rows, beam_scores.contiguous(), k_row, cand_scores, cand_tokens, tile_s, tile_i,
            parts, mass, part_x, part_i, part_n, splits,
            LOG_SOFTMAX=bool(apply_log_softmax), PRECISE=precise_log_available(x), BLOCK=block, CAP=_TILE,
            EARLY=early, NC=min(block, CLASSES), NCK=nck, SPLIT=splits > 1, FOLD=fold, REC=4 + fold,
            UNION=triton.next_power_of_2(splits * fold), STAGES=stages, num_warps=8 if block >= 1024 else 4,
        )
    return _merge(cand_scores, cand_tokens, batch, num_beams, vocab, k)


# The merge kernel sorts an item's num_beams x k_row candidates in one program (as the cuda
# backend's beam_merge_kernel does up to 4096); more take the torch ops. The interpreter runs
# tl.sort's compare-exchange network one Python call per element and stage: there only small
# items take the kernel (tests/ops/test_beam_triton.py's merge tests stay below).
MERGE_MAX = 4096
INTERPRET_MERGE_MAX = 64


def _merge(
    cand_scores: torch.Tensor, cand_tokens: torch.Tensor, batch: int, num_beams: int, vocab: int, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each batch item's top k of its num_beams x k_row candidates, ranked by the reference's unique
    keys (score key, then the lower flat index): one launch where there were ~20 torch ops, each a
    launch and host time (Triton beam top-k measured 24-26 launches a call on the H200)."""
    n = num_beams * cand_scores.shape[1]
    device = cand_scores.device
    scores = torch.empty((batch, k), dtype=torch.float32, device=device)
    token_ids = torch.empty((batch, k), dtype=torch.int64, device=device)
    beam_indices = torch.empty((batch, k), dtype=torch.int64, device=device)
    if batch == 0:
        return scores, token_ids, beam_indices
    if n > (INTERPRET_MERGE_MAX if interpreting(cand_scores) else MERGE_MAX):
        beam_of_row = torch.arange(cand_scores.shape[0], device=device, dtype=torch.int64) % num_beams
        flat = (beam_of_row[:, None] * vocab + cand_tokens).reshape(batch, n)
        flat_scores = cand_scores.reshape(batch, n)
        _, pos = torch.topk(_score_key(flat_scores) * _LOW32 + (_MAX_FLAT - flat), k, dim=1)
        sel = flat.gather(1, pos)
        return flat_scores.gather(1, pos), sel % vocab, sel // vocab
    n_pad = triton.next_power_of_2(n)
    launch(_beam_merge_kernel)[(batch,)](
        cand_scores, cand_tokens, scores, token_ids, beam_indices, vocab, num_beams, cand_scores.shape[1], k,
        N=n_pad, num_warps=4 if n_pad <= 1024 else 8,
    )
    return scores, token_ids, beam_indices


@triton.jit(do_not_specialize=["vocab", "num_beams", "k_row", "k"])
def _beam_merge_kernel(
    cand_s_ptr, cand_t_ptr, out_s_ptr, out_t_ptr, out_b_ptr, vocab, num_beams, k_row, k, N: tl.constexpr,
):
    """Batch item ``program_id(0)``: its candidates (rows item * num_beams .. + num_beams, k_row
    each) sorted by the reference's rank (pydecode.ops.beam: the score's order-preserving key in
    the high 32 bits, MAX_FLAT - flat index below: unique), the first k written. A score is read
    back from its candidate's slot, so its bits are the candidate's (-0.0 and NaN payloads too)."""
    item = tl.program_id(0).to(tl.int64)
    n = num_beams * k_row
    i = tl.arange(0, N)
    valid = i < n
    base = item * n
    s = tl.load(cand_s_ptr + base + i, mask=valid, other=0.0)
    t = tl.load(cand_t_ptr + base + i, mask=valid, other=0)
    flat = (i // k_row).to(tl.int64) * vocab + t
    # float_key is the reference's score key: -0.0 as +0.0, every NaN as one NaN above +inf
    rank = float_key(s).to(tl.int64) * 4294967296 + (4294967295 - flat)
    rank = tl.where(valid, rank, -9223372036854775807 - 1)  # padding sorts last
    top = tl.sort(rank, descending=True)
    out = i < k
    flat_top = 4294967295 - (top & 4294967295)
    beam = tl.minimum(flat_top // vocab, num_beams - 1)  # in range even on a logic error (as cuda's merge)
    token = flat_top % vocab
    # the score: the candidate of that row holding that token (a row's tokens are distinct)
    row_start = base + beam * k_row
    score = tl.zeros((N,), dtype=tl.float32)
    for j in range(0, k_row):
        hit = out & (tl.load(cand_t_ptr + row_start + j, mask=out, other=-1) == token)
        score = tl.where(hit, tl.load(cand_s_ptr + row_start + j, mask=hit, other=0.0), score)
    o = item * k + i
    tl.store(out_s_ptr + o, score, mask=out)
    tl.store(out_t_ptr + o, token, mask=out)
    tl.store(out_b_ptr + o, beam, mask=out)
