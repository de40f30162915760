"""Triton backend of the sampling family (reference: ``pydecode.ops.sampling``, the ``*_torch``
functions; transformers' Temperature/TopK/TopP/MinP warpers).

One kernel, ``_filter_chain_kernel``, does temperature (or ``log`` of probabilities) -> top-k ->
top-p -> min-p -> Philox Gumbel-max sampling for one row per program, reading the row a few
times and never sorting it:

* top-k: the k-th largest order-preserving key, then ``x < kth`` is removed (ties kept, NaN never
  removed), as in transformers. For k <= CAP the entries at or above the class bound (the k-th
  largest of the stats pass's column-class maxima, _common.class_maxima) are copied to a tile and
  the select runs there (_tile_kth: 2 reads, no histogram of the row); otherwise, or when
  they overflow the tile, by radix select (4 passes of 8-bit digits, ``tl.histogram``), which
  copies the entries to the tile as soon as at most CAP of them share or exceed its key prefix and
  takes the remaining digits there (the early tile, _radix_select);
* top-p: transformers removes the ascending-sorted entries whose float32 cumulative softmax is
  ``<= 1 - p``; here the kept set is ``key > K*`` with ``K*`` the largest key whose mass at or
  below it is ``<= (1 - p) * Z``, found by a pivot search over the value range (_NUM_PIVOTS
  pivots a pass, each pass shrinking it that many times) down to an interval of at most PCAP
  (2048) entries, then on a tile of them; in the decode-loop call, rows without a top-k try the
  top-p tile first (its top ~1400 entries, _top_p_tile: 2 reads when the nucleus lies on it).
  The masses are summed in another order than torch's cumsum, and all entries tied with the
  boundary value are kept or removed together, so only tokens whose cumulative mass lies within
  float rounding of the threshold (or tied at it) can differ from the reference; the tests bound
  where;
* min-p: ``exp(x - m) / Z < min_p * (1 / Z)``, transformers' comparison with this kernel's Z;
* ``min_tokens_to_keep > 1``: the keep-th largest value by the same radix select (ties kept);
* sampling: the randomness contract (pydecode.ops.philox): argmax over the kept entries of
  ``x + gumbel(philox(seed, offset, token))``, lowest index on ties; blocks whose best value
  plus the largest possible noise (16.64) cannot beat the running best skip the Philox rounds.

Small batches (rows too few to fill the GPU, ``_common.split_count``) spread the decode-loop
call (tokens and log-probs, a top-k the class bound selects) over several programs per row:
``_split_pass_kernel`` takes each slice's stats and class maxima and copies the slice's entries at
or above its own class bound; ``_filter_chain_kernel`` (``SPLIT``) merges the stats, gathers the
entries at or above the row's class bound from those copies (gather_bounded) and finishes each
row on that tile as before. Two launches; rows the bound does not serve (k above it, an
overflowing tile) take the one-program path's radix select over the row. Greedy splits too. The
merges are exact (maxima, integer counts; the float sums run over the same tile in the same
order), so the split path returns what one program per row returns, bit for bit. Rows without a
top-k in such a call (k = 0) take the top-p tile with its edge from the slices' records (a class
bound over their folded classes, _p_tile_rank): the row's program then reads the row once (the
sum with the copy) instead of twice; that tile differs from the one-program path's, so its float
sums do too (tokens agree but within rounding of the top-p boundary).

Seeds and offsets are read from device tensors and nothing synchronises with the host, so a
decode step with these ops can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register

from ._common import (
    CLASSES,
    NEVER,
    SAMPLING_SPLIT_MIN_VOCAB,
    T_DIVIDE,
    T_LOG,
    T_MUL_RECIP,
    T_NONE,
    append_counted,
    append_selected,
    block_for,
    class_bound,
    class_maxima,
    early_tile,
    float_key,
    gather_bounded,
    interpreting,
    key_value,
    launch,
    load_row,
    merged_stats,
    pivot_count,
    precise_exp,
    precise_log,
    precise_log_available,
    prefix_at_least,
    radix_digit,
    row_programs,
    row_stages,
    rows_2d,
    slices,
    split_class_bound,
    split_count,
    split_record,
    split_rows,
    tile_digit_hist,
    tile_select,
)

_NEG_INF = float("-inf")
# Largest Gumbel noise the contract can draw: u <= 1 - 2^-24 gives -log(-log(u)) = 16.64.
_GUMBEL_MAX = 17.0
# Pivots per pass of the top-p search (the row path's _pivot_masses, the tile's _refine_cut). Each
# pivot costs ~16 instructions per element of the pass (bench/triton_pass_cost.py, triton 3.6: 292
# at 16 pivots and 512 a step, 78 at 4 and 2048), far more than the read: 4 pivots shrink the
# interval 4x a pass instead of 16x, so 1-2 more passes, and about half the search's instructions.
_NUM_PIVOTS = 4
# One below the smallest key a value can have (-inf's): "nothing removed" for the top-p cut.
_BELOW_KEYS = tl.constexpr(-2139095042)
# Top-k candidate tile: rows whose top-k keeps at most this many entries (ties included) finish
# on a register tile of this size (its top-p search holds a 512 x _NUM_PIVOTS tile).
_CAP = 512
# The top-p tiles (PCAP in the kernel): the top-p tile (_top_p_tile) and the row path's boundary
# tile, _P_CAP entries. The top-p tile's edge is a class bound (see _p_tile_rank): the entries
# reaching it must fit the tile, and the nucleus must lie on it (the mass below the edge <=
# (1 - p) * Z), or the row takes the row path (the tile's read wasted, ~9 more). An edge reaching
# ~_P_TILE_ENTRIES entries (up to ~1500 on bfloat16 rows, whose ties add to it) held the nucleus of
# every row of the op benchmark's logits (randn * 3 at T 0.7, p 0.9: 345 entries on average, up to
# 920); the 512-entry tile of rank 432 used before missed it on 1 row in 4 (bench/top_p_tile_fit.py,
# 200 rows), so from batch 8 on 9 calls in 10 or more ran a failed tile and then the row path
# (~530 us a call on the H200; at batch 1-64 the split path did not try the tile at all). The sum
# pass counts the entries before any copy, so an edge that lets too many through costs no read.
_P_CAP = 2048
_P_TILE_ENTRIES = 1400


def _p_tile_rank(vocab: int, classes: int) -> int:
    """The rank of the top-p tile's class bound over ``classes`` column classes of a row of ``vocab``
    entries: the rank whose bound ~_P_TILE_ENTRIES entries reach when the row's top entries are
    spread over the classes at random (a class's maximum reaches a bound that q of the entries reach
    with probability 1 - (1 - q)^(vocab / classes)). 1017-1030 over the 2048 classes of one program
    per row (vocab 32000-152064); over a split row's slices' folded classes, 479 of 512 at 2 slices
    of 128256, 738 of 960 at 15 (a fixed share of the classes cannot serve both: 3/4 left 2% of the
    benchmark's rows off the tile at 2 slices, 7/8 overflowed the tile at 15)."""
    if vocab <= _P_TILE_ENTRIES:
        return classes
    reached = 1.0 - (1.0 - _P_TILE_ENTRIES / vocab) ** (vocab / classes)
    return max(1, min(classes, round(classes * reached)))


@triton.jit
def _radix_select(row_ptr, vocab, scale, k, hist0, tile_x_ptr, tile_i_ptr, TRANSFORM: tl.constexpr,
                  PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, EARLY: tl.constexpr,
                  STAGES: tl.constexpr):
    """(key, n_ge, listed): the key (int64 holding an int32) of the k-th largest entry of the row,
    NaN ranking highest, how many entries have a key >= it, and how many entries went to the tile.

    ``hist0`` is the histogram of the top 8 bits of every key (taken in the stats pass); three
    more digits follow, each from a histogram of the next 8 bits among the entries sharing the
    digits chosen so far (the others go to an ignored bin). With EARLY, as soon as the entries
    whose key prefix is >= the chosen one number at most CAP, one pass copies them to the tile
    (values and columns, column order: ``listed`` of them) and the remaining digits are
    histogrammed on the tile instead of the row: the same digits, so the same key and count, in
    2-3 reads of the row instead of 4 when the k-th value's neighbourhood is sparse (the usual
    decode-step row). Otherwise ``listed`` is 0.
    """
    bins = tl.arange(0, 512)
    prefix, remaining, at_digit = radix_digit(hist0, bins, tl.full((), 0, tl.int64), k.to(tl.int32))
    listed = tl.full((), 0, tl.int32)
    for p in tl.static_range(1, 4):
        if EARLY:
            if (listed == 0) & (k.to(tl.int32) - remaining + at_digit <= CAP):
                listed = _copy_prefix(row_ptr, 0, vocab, scale, prefix, 32 - 8 * p, tile_x_ptr, tile_i_ptr,
                                      TRANSFORM, PRECISE, BLOCK, CAP, STAGES)
                tl.debug_barrier()  # the tile is read back by other threads of this program
        if listed > 0:
            hist = tile_digit_hist(tile_x_ptr, listed, 24 - 8 * p, prefix, CAP)
        else:
            hist = _digit_hist(row_ptr, 0, vocab, scale, 24 - 8 * p, prefix, TRANSFORM, PRECISE, BLOCK, STAGES)
        prefix, remaining, at_digit = radix_digit(hist, bins, prefix, remaining)
    return prefix - 2147483648, k.to(tl.int32) - remaining + at_digit, listed


@triton.jit
def _copy_prefix(row_ptr, lo, hi, scale, prefix, shift, dst_x_ptr, dst_i_ptr, TRANSFORM: tl.constexpr,
                 PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, STAGES: tl.constexpr):
    """Copy the entries of columns [lo, hi) whose unsigned key shifted right by ``shift`` is >=
    ``prefix`` (values and columns, in column order) to a CAP-entry buffer; returns how many there
    are (past CAP only the first CAP are written: the caller checks)."""
    written = tl.full((), 0, tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        sel = mask & prefix_at_least(x, shift, prefix)
        written = append_selected(x, cols, sel, written, dst_x_ptr, dst_i_ptr, CAP)
    return written


@triton.jit
def _keep_from_kth(tile_x_ptr, tile_i_ptr, listed, kth, CAP: tl.constexpr):
    """Compact the tile's first ``listed`` entries to those >= kth, keeping their order (what
    _copy_candidates copies from the row); returns how many."""
    offs = tl.arange(0, CAP)
    valid = offs < listed
    xs = tl.load(tile_x_ptr + offs, mask=valid, other=float("-inf"))
    ids = tl.load(tile_i_ptr + offs, mask=valid, other=0)
    tl.debug_barrier()  # every thread holds its entries before any moves
    sel = valid & (xs >= kth)
    pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
    tl.store(tile_x_ptr + pos, xs, mask=sel)
    tl.store(tile_i_ptr + pos, ids, mask=sel)
    return tl.sum(sel.to(tl.int32), axis=0)


@triton.jit
def _digit_hist(row_ptr, lo, hi, scale, shift, prefix, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr,
                BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """Histogram over columns [lo, hi) of the keys' 8-bit digit at ``shift`` among the keys whose
    higher digits are ``prefix`` (the others go to an ignored bin)."""
    hist = tl.zeros([512], dtype=tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        ukey = float_key(x).to(tl.int64) + 2147483648
        digit = ((ukey >> shift) & 255).to(tl.int32)
        match = mask & ((ukey >> (shift + 8)) == prefix)
        hist += tl.histogram(tl.where(match, digit, 256), 512)
    return hist


@triton.jit
def _copy_candidates(row_ptr, lo, hi, scale, kth, dst_x_ptr, dst_i_ptr, TRANSFORM: tl.constexpr,
                     PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, STAGES: tl.constexpr):
    """Copy the entries >= kth of columns [lo, hi) (values and columns, in column order) to the
    first slots of a CAP-entry buffer; returns how many there are (callers ensure <= CAP)."""
    written = tl.full((), 0, tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        written = append_selected(x, cols, mask & (x >= kth), written, dst_x_ptr, dst_i_ptr, CAP)
    return written


@triton.jit
def _row_mass(row_ptr, vocab, scale, m, kth, bound, tile_x_ptr, tile_i_ptr, TRANSFORM: tl.constexpr,
              PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr, BOUND: tl.constexpr, STAGES: tl.constexpr):
    """(Z, n, n_on, below): the sum of ``exp(x - m)`` over the entries >= kth (the top-k filtered
    row's softmax denominator) and their count; with BOUND also how many of them have an unsigned
    key >= ``bound`` (the top-p tile's entries), copied to the CAP-entry tile as they come (values
    and columns, column order; past CAP the writes are dropped), and the sum of ``exp(x - m)`` over
    the others, else 0."""
    z = tl.full((), 0.0, tl.float32)
    n_kept = tl.full((), 0, tl.int32)
    n_on = tl.full((), 0, tl.int32)
    bound_value = key_value(tl.full((), 0, tl.int64) + bound - 2147483648)  # bound may be a Python int
    below = tl.full((), 0.0, tl.float32)
    for start in tl.range(0, vocab, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        kept = mask & (x >= kth)
        w = tl.where(kept, tl.exp(x - m), 0.0)
        z += tl.sum(w, axis=0)
        n_kept += tl.sum(kept.to(tl.int32), axis=0)
        if BOUND:  # a float compare (kept entries are not NaN): cheaper than their keys'
            on = kept & (x >= bound_value)
            n_on = append_counted(x, cols, on, tl.sum(on.to(tl.int32), axis=0), n_on, tile_x_ptr, tile_i_ptr, CAP)
            below += tl.sum(tl.where(on, 0.0, w), axis=0)
    return z, n_kept, n_on, below


@triton.jit
def _top_p_tile(row_ptr, vocab, scale, m, kth, keep_floor, threshold, bound, tile_x_ptr, tile_i_ptr,
                TRANSFORM: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr,
                STAGES: tl.constexpr):
    """The top-p tile of a row without an active top-k: (Z, n, used, listed, below_key, below_mass).

    The tile takes the entries at or above ``bound``, a class bound (an unsigned key, of _p_tile_rank's
    rank over the row's column classes, class_maxima, or on a split row over its slices' folded
    classes): its top entries (see _P_CAP). The Z pass also copies them to the tile and sums the mass of the
    others; when they fit the tile and that mass is <= (1 - p) * Z (``threshold`` = 1 - p), the top-p
    boundary lies on the tile (its lower edge is feasible, the row maximum is not), so the cut,
    min-p, the sample and the log-prob finish there (``used``): 2 reads of the row. Otherwise the
    row path runs with this Z (the copy, ~48 instructions per element of a block storing by scan,
    then wasted)."""
    z, n_kept, n_on, below = _row_mass(row_ptr, vocab, scale, m, kth, bound, tile_x_ptr, tile_i_ptr, TRANSFORM,
                                       PRECISE, BLOCK, CAP, True, STAGES)
    floor_on = float_key(keep_floor).to(tl.int64) + 2147483648 >= bound  # min_tokens_to_keep's entries on it
    used = (z > threshold * z) & floor_on & (n_on > 0) & (n_on <= CAP) & (below <= threshold * z)
    listed = tl.full((), 0, tl.int32)
    below_key = tl.full((), _BELOW_KEYS, tl.int64)
    below_mass = tl.full((), 0.0, tl.float32)
    if used:
        listed = n_on
        below_key = bound - 2147483649  # the largest signed key below the tile's
        below_mass = below
    return z, n_kept, used, listed, below_key, below_mass


@triton.jit
def _pivot_masses(row_ptr, vocab, scale, m, kth, pivots, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr,
                  BLOCK_P: tl.constexpr, NP: tl.constexpr, STAGES: tl.constexpr):
    """One pass of the row path's top-p search: for each of the NP pivots, the mass (sum of
    ``exp(x - m)``) and the count of the entries >= kth at or below it."""
    acc = tl.zeros([NP], dtype=tl.float32)
    cnt = tl.zeros([NP], dtype=tl.int32)
    for start in tl.range(0, vocab, BLOCK_P, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK_P)
        mask = cols < vocab
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        kept = mask & (x >= kth)
        # `le` before `w`: triton 3.6's RemoveLayoutConversions otherwise rewrites `x - m` to use the
        # 2-D layout of x built for `le` below it ("operand does not dominate this use"); triton 3.9
        # compiles either order.
        le = kept[:, None] & (x[:, None] <= pivots[None, :])
        w = tl.where(kept, tl.exp(x - m), 0.0)
        acc += tl.sum(tl.where(le, w[:, None], 0.0), axis=0)
        cnt += tl.sum(le.to(tl.int32), axis=0)
    return acc, cnt


@triton.jit
def _copy_between(row_ptr, vocab, scale, kth, lo_v, hi_v, dst_ptr, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr,
                  BLOCK: tl.constexpr, CAP: tl.constexpr, STAGES: tl.constexpr):
    """Copy the values >= kth strictly between lo_v and hi_v (the top-p search's boundary interval)
    to a CAP-entry tile, in column order; returns how many (the search leaves at most CAP)."""
    written = tl.full((), 0, tl.int32)
    for start in tl.range(0, vocab, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        sel = mask & (x >= kth) & (x > lo_v) & (x < hi_v)
        pos = written + tl.cumsum(sel.to(tl.int32), axis=0) - 1
        tl.store(dst_ptr + pos, x, mask=sel & (pos < CAP))
        written += tl.sum(sel.to(tl.int32), axis=0)
    return written


@triton.jit
def _final_pass(row_ptr, vocab, scale, m, kth, keep_floor, topp_on, cut, minp_on, z_kept, min_p_cut, out_row_ptr,
                filter_value, seed, off_lo, off_hi, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr,
                BLOCK: tl.constexpr, WRITE_FILTERED: tl.constexpr, WRITE_KEPT_INPUT: tl.constexpr,
                WANT_TOKENS: tl.constexpr, WANT_LOGPROBS: tl.constexpr, STAGES: tl.constexpr):
    """The row path's last pass: the filters' verdict per entry (below kth; at or below the top-p
    cut; under the min-p cut; never the kept floor), the written rows, and the sample: (best noisy
    value, its column, the kept entries' sum of ``exp(x - m)`` for the log-prob)."""
    neg_inf = float("-inf")
    best = tl.full((), neg_inf, tl.float32)
    best_idx = tl.full((), 0, tl.int64)
    z_final = tl.full((), 0.0, tl.float32)
    for start in tl.range(0, vocab, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        removed = x < kth
        protected = x >= keep_floor
        if topp_on:
            removed |= (float_key(x) <= cut) & (~protected)
        if minp_on:
            prob = tl.math.div_rn(tl.exp(x - m), z_kept)
            removed |= (prob < min_p_cut) & (~protected)
        if WRITE_FILTERED:
            tl.store(out_row_ptr + cols, tl.where(removed, filter_value, x), mask=mask)
        if WRITE_KEPT_INPUT:
            raw = tl.load(row_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(out_row_ptr + cols, tl.where(removed, 0.0, raw), mask=mask)
        if WANT_TOKENS:
            cand = mask & (~removed) & (x > neg_inf)
            xc = tl.where(cand, x, neg_inf)
            if WANT_LOGPROBS:
                z_final += tl.sum(tl.where(cand, precise_exp(xc - m, PRECISE), 0.0), axis=0)
            # a block whose best entry plus the largest noise cannot beat the best skips Philox
            if tl.max(xc, axis=0) + 17.0 > best:
                block_best, block_idx = _gumbel_best(xc, cand, cols, seed, off_lo, off_hi, PRECISE)
                if block_best > best:
                    best = block_best
                    best_idx = block_idx
    return best, best_idx, z_final


@triton.jit
def _refine_cut(keys, w, lo, hi, lo_mass, target, NP: tl.constexpr):
    """Top-p cut on a register tile: (cut, mass at or below it), the largest key in [lo, hi)
    whose mass at or below it (``lo_mass`` + the tile's ``w`` of keys <= it) is <= target.

    ``lo`` must be feasible (its mass ``lo_mass`` <= target) and ``hi`` infeasible; a 17-way
    search in key space (pivots in int64: no overflow, compared as int32 keys)."""
    js = tl.arange(0, NP).to(tl.int64) + 1
    base = lo_mass  # the mass outside the tile, at or below the starting lo
    while hi - lo > 1:
        pivots = lo + ((hi - lo) * js) // (NP + 1)
        acc = base + tl.sum(tl.where(keys[:, None] <= pivots.to(tl.int32)[None, :], w[:, None], 0.0), axis=0)
        feasible = acc <= target
        new_lo = tl.max(tl.where(feasible, pivots, lo), axis=0)
        lo_mass = tl.max(tl.where(feasible, acc, lo_mass), axis=0)
        hi = tl.min(tl.where(feasible, hi, pivots), axis=0)
        lo = new_lo
    return lo.to(tl.int32), lo_mass


@triton.jit
def _finish_on_tile(tile_x_ptr, tile_i_ptr, written, m, z, ROW_Z: tl.constexpr, keep_floor, topp_on, threshold,
                    minp_on, min_p32, below_key, below_mass, seed, off_lo, off_hi, WANT_LOGPROBS: tl.constexpr,
                    PRECISE: tl.constexpr, NP: tl.constexpr, SIZE: tl.constexpr):
    """Top-p, min-p and the sample on a row's tile of ``written`` entries (at most SIZE): (best noisy
    value, its column, the kept entries' sum of ``exp(x - m)`` for the log-prob). The top-k tile holds
    the whole filtered row, so its Z is its own sum; the top-p tile (ROW_Z) holds the entries above
    ``below_key``, whose mass ``below_mass`` the row's ``z`` includes."""
    neg_inf = float("-inf")
    offs = tl.arange(0, SIZE)
    valid = offs < written
    xs = tl.load(tile_x_ptr + offs, mask=valid, other=neg_inf)
    ids = tl.load(tile_i_ptr + offs, mask=valid, other=0)
    w = tl.where(valid, tl.exp(xs - m), 0.0)
    keys = float_key(xs)
    protected = xs >= keep_floor
    removed = ~valid
    if ROW_Z:
        z_kept = z
    else:
        z_kept = tl.sum(w, axis=0)
    if topp_on:
        target = threshold * z_kept
        cut = float_key(m)  # top_p 0 (everything at or below the threshold): only the kept floor survives
        if z_kept > target:
            cut, tile_mass = _refine_cut(keys, w, below_key, float_key(m).to(tl.int64), below_mass, target, NP)
        removed |= (keys <= cut) & (~protected)
        z_kept = tl.sum(tl.where(removed, 0.0, w), axis=0)
    if minp_on:
        min_p_cut = min_p32 * tl.math.div_rn(1.0, z_kept)
        removed |= (tl.math.div_rn(tl.exp(xs - m), z_kept) < min_p_cut) & (~protected)
    cand = (~removed) & (xs > neg_inf)
    best, best_idx = _gumbel_best(xs, cand, ids, seed, off_lo, off_hi, PRECISE)
    z_final = tl.full((), 0.0, tl.float32)
    if WANT_LOGPROBS:  # the log-prob's sum takes libdevice's exp (see precise_exp); the filters keep tl.exp
        z_final = tl.sum(tl.where(cand, precise_exp(xs - m, PRECISE), 0.0), axis=0)
    return best, best_idx, z_final


@triton.jit
def _gumbel_best(x, cand, cols, seed, off_lo, off_hi, PRECISE: tl.constexpr):
    """(best noisy value, its lowest column) of the contract's Gumbel-max over ``cand`` entries."""
    c0 = cols.to(tl.uint32)
    c1 = tl.zeros_like(c0) + off_lo
    c2 = tl.zeros_like(c0) + off_hi
    c3 = tl.zeros_like(c0)
    w0, _, _, _ = tl.philox(seed, c0, c1, c2, c3)
    u = ((w0 >> 9).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
    noisy = tl.where(cand, x + (-precise_log(-precise_log(u, PRECISE), PRECISE)), float("-inf"))
    best = tl.max(noisy, axis=0)
    idx = tl.min(tl.where(noisy == best, cols, 2147483647), axis=0).to(tl.int64)
    return best, idx


@triton.jit
def _row_scale(temp_ptr, row, TRANSFORM: tl.constexpr):
    """The per-row float32 factor load_row applies (temperature or its reciprocal; 1 otherwise)."""
    scale = tl.full((), 1.0, tl.float32)
    if TRANSFORM == 1:
        scale = tl.load(temp_ptr + row).to(tl.float32)
    elif TRANSFORM == 2:
        # torch on CUDA: x * float32(1.0 / T), the reciprocal of the float64 temperature in float64
        # (a float64 `/` is correctly rounded; see pydecode.ops.sampling._temperature).
        scale = (1.0 / tl.load(temp_ptr + row).to(tl.float64)).to(tl.float32)
    return scale


@triton.jit
def _stats_range(row_ptr, lo, hi, scale, hist_on, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr,
                 BLOCK: tl.constexpr, CLASSES: tl.constexpr, NC: tl.constexpr, STAGES: tl.constexpr):
    """Over columns [lo, hi): maximum of the non-NaN entries (-inf if none), NaN count, the
    histogram of the keys' top byte when ``hist_on`` (bins >= 256: outside the range; zeros
    otherwise) and, with CLASSES, the NC column classes' key maxima (class_maxima).

    The histogram is the costly part: tl.histogram of 512 bins compiles (triton 3.6, sm_90) to ~100
    more instructions per element than the rest of the pass, so it is taken only for the radix
    select (a k above the class bound's reach, min_tokens_to_keep, the early tiles switched off)."""
    neg_inf = float("-inf")
    # per block position, reduced once after the loop (no cross-warp reduction per step)
    m_pos = tl.full([BLOCK], neg_inf, tl.float32)
    nan_pos = tl.zeros([BLOCK], dtype=tl.int32)
    hist0 = tl.zeros([512], dtype=tl.int32)
    kmax = tl.full([BLOCK], -2147483648, tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < hi
        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
        isnan = x != x
        m_pos = tl.maximum(m_pos, tl.where(isnan, neg_inf, x))
        nan_pos += (isnan & mask).to(tl.int32)
        if CLASSES:  # columns past hi load as -inf: a lower bound too
            kmax = tl.maximum(kmax, float_key(x))
        if hist_on:
            top_byte = ((float_key(x).to(tl.int64) + 2147483648) >> 24).to(tl.int32)
            hist0 += tl.histogram(tl.where(mask, top_byte, 256), 512)
    return tl.max(m_pos, axis=0), tl.sum(nan_pos, axis=0), hist0, class_maxima(kmax, BLOCK, NC)


@triton.jit
def _top_byte_hist(row_ptr, vocab, scale, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr,
                   NC: tl.constexpr, STAGES: tl.constexpr):
    """The radix select's first-digit histogram (_stats_range's) when the stats pass did not take it."""
    unused_m, unused_nan, hist0, unused_classes = _stats_range(row_ptr, 0, vocab, scale, True, TRANSFORM, PRECISE,
                                                               BLOCK, False, NC, STAGES)
    return hist0


@triton.jit
def _tile_kth(tile_x_ptr, listed, k, CAP: tl.constexpr):
    """(key, n_ge) as _radix_select returns them, from a tile whose first ``listed`` values hold
    every entry of the row at or above the k-th largest (the class bound's tile, the early tile):
    the select's four digits taken on the tile."""
    prefix, remaining, at_digit = tile_select(tile_x_ptr, listed, tl.full((), 0, tl.int64), k.to(tl.int32), 0, CAP)
    return prefix - 2147483648, k.to(tl.int32) - remaining + at_digit


# ---- the split path (_common.split_record): small batches spread each row over `splits` programs,
# one pass before the chain kernel, which gathers the row's top-k tile from the slices' copies.
@triton.jit(do_not_specialize=["min_keep", "splits"])
def _split_pass_kernel(
    x_ptr, stride, vocab, temp_ptr, top_k_ptr, min_keep, parts_ptr, part_x_ptr, part_i_ptr, part_n_ptr, splits,
    slice_len, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr, BLOCK: tl.constexpr, CAP: tl.constexpr,
    NC: tl.constexpr, NCS: tl.constexpr, NCK: tl.constexpr, FOLD: tl.constexpr, REC: tl.constexpr, STAGES: tl.constexpr,
):
    """Slice ``program_id(1)`` of row ``program_id(0)``: its record (maximum, NaN count, class
    maxima folded to FOLD) and, when the chain kernel selects the row's top-k by the class bound
    (k <= NCK), a copy of the slice's entries at or above the slice's own class bound (the k-th
    largest of its maxima folded to NCS; none below k classes, every entry) to its tile: two
    reads of the slice, the second from L2."""
    row = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    row_ptr = x_ptr + row * stride
    lo = s * slice_len
    hi = tl.minimum(lo + slice_len, vocab)
    scale = _row_scale(temp_ptr, row, TRANSFORM)
    m, n_nan, unused_hist, cmax = _stats_range(row_ptr, lo, hi, scale, False, TRANSFORM, PRECISE, BLOCK, True, NC,
                                               STAGES)
    k = tl.load(top_k_ptr + row)
    k_eff = tl.maximum(k, min_keep)
    bounded = (k > 0) & (k_eff < vocab) & (k_eff <= NCK)  # the chain kernel's `bounded`
    rec = parts_ptr + (row * splits + s) * REC
    bound = split_record(rec, m, n_nan, cmax, tl.where(bounded, k_eff, 0).to(tl.int32), NC, NCS, FOLD)
    tl.store(rec + 3, tl.full((), float("-inf"), tl.float32).to(tl.int32, bitcast=True))  # the beam's check: unused
    if bounded:
        dst = (row * splits + s) * CAP
        n = _copy_prefix(row_ptr, lo, hi, scale, bound, 0, part_x_ptr + dst, part_i_ptr + dst, TRANSFORM, PRECISE,
                         BLOCK, CAP, STAGES)
        tl.store(part_n_ptr + row * splits + s, n)


@triton.jit(do_not_specialize=["n_rows", "min_keep", "filter_value", "use_top_k", "use_top_p",
                             "use_min_p", "splits", "p_rank"])
def _filter_chain_kernel(
    x_ptr, stride, vocab, n_rows,
    temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, min_keep,
    seed_ptr, offset_ptr,
    tokens_ptr, logprobs_ptr, rows_ptr, filter_value,
    use_top_k, use_top_p, use_min_p,
    cand_x_ptr, cand_i_ptr,
    parts_ptr, part_x_ptr, part_i_ptr, part_n_ptr, splits, p_rank,
    TRANSFORM: tl.constexpr, MIN_KEEP_GT1: tl.constexpr, WANT_TOKENS: tl.constexpr, WANT_LOGPROBS: tl.constexpr,
    WRITE_FILTERED: tl.constexpr, WRITE_KEPT_INPUT: tl.constexpr, PRECISE: tl.constexpr,
    BLOCK: tl.constexpr, BLOCK_P: tl.constexpr, NP: tl.constexpr, TILE: tl.constexpr, CAP: tl.constexpr,
    PCAP: tl.constexpr, SPLIT: tl.constexpr, EARLY_TILE: tl.constexpr, PTILE: tl.constexpr, NC: tl.constexpr,
    NCK: tl.constexpr, FOLD: tl.constexpr, REC: tl.constexpr, UNION: tl.constexpr, STAGES: tl.constexpr,
):
    # Persistent programs (row_programs): program p runs rows p, p + programs, ... (one row each
    # while the batch is small enough).
    for program_row in range(tl.program_id(0), n_rows, tl.num_programs(0)):
        row = tl.full((), 0, tl.int64) + program_row  # int64 (the interpreter gives a Python int)
        row_ptr = x_ptr + row * stride
        neg_inf = float("-inf")
        # the row's scratch: the top-k tiles' CAP entries, the top-p tiles' PCAP (>= CAP)
        tile_x = cand_x_ptr + row * PCAP
        tile_i = cand_i_ptr + row * PCAP

        scale = _row_scale(temp_ptr, row, TRANSFORM)

        # the row's top-k, and whether the class bound can select it (k within the NC classes)
        topk_row = tl.full((), 0, tl.int1)
        k_eff = tl.full((), 0, tl.int64)
        if use_top_k != 0:
            k = tl.load(top_k_ptr + row)
            k_eff = tl.maximum(k, min_keep).to(tl.int64)
            topk_row = (k > 0) & (k_eff < vocab)
        bounded = tl.full((), 0, tl.int1)
        if EARLY_TILE:
            bounded = topk_row & (k_eff <= NCK)
        # the radix selects' first digit (the top-k's beyond the class bound, the keep floor's)
        hist_on = (~bounded) & (topk_row | MIN_KEEP_GT1)

        # ---- pass 1: row maximum over non-NaN entries, NaN presence, the class maxima (the early
        # tiles' bounds) and, for a radix select, the histogram of the keys' top byte
        cmax = tl.zeros([NC], dtype=tl.int32)
        if SPLIT:  # taken by _split_pass_kernel over the slices; merged here (exact: maxima and integer sums)
            m, n_nan = merged_stats(parts_ptr, row, splits, REC, UNION // FOLD)
            hist0 = tl.zeros([512], dtype=tl.int32)
            have_hist = tl.full((), 0, tl.int1)
        else:
            m, n_nan, hist0, cmax = _stats_range(row_ptr, 0, vocab, scale, hist_on, TRANSFORM, PRECISE, BLOCK,
                                                 EARLY_TILE or PTILE, NC, STAGES)
            have_hist = hist_on
        # softmax-based filters leave rows with NaN, +inf or nothing finite unchanged (their softmax is NaN)
        bad = (n_nan > 0) | (m == float("inf")) | (m == neg_inf)

        # ---- top-k: entries below the k-th largest value are removed (ties kept)
        kth = tl.full((), neg_inf, tl.float32)
        n_ge = tl.full((), 2147483647, tl.int32)
        listed = tl.full((), 0, tl.int32)  # entries >= kth (and maybe more) the select left on the row's tile
        if topk_row:
            kth_key = tl.full((), 0, tl.int64)
            listed = tl.full((), CAP + 1, tl.int32)  # CAP + 1: no tile yet
            if bounded:  # two reads (stats, copy) when the entries at the class bound fit the tile
                if SPLIT:  # the slices copied theirs (_split_pass_kernel)
                    listed, unused_below = gather_bounded(parts_ptr, part_x_ptr, part_i_ptr, part_n_ptr, row, splits,
                                                          k_eff.to(tl.int32), tile_x, tile_i, CAP, FOLD, REC, UNION,
                                                          STAGES)
                else:
                    listed = _copy_prefix(row_ptr, 0, vocab, scale, class_bound(cmax, k_eff.to(tl.int32), NC, NCK),
                                          0, tile_x, tile_i, TRANSFORM, PRECISE, BLOCK, CAP, STAGES)
                if listed <= CAP:
                    tl.debug_barrier()  # the tile is read back by other threads of this program
                    kth_key, n_ge = _tile_kth(tile_x, listed, k_eff, CAP)
            if listed > CAP:  # the radix select over the row, its first digit from the top byte's histogram
                if ~have_hist:  # the stats pass did not take it: one more read
                    hist0 = _top_byte_hist(row_ptr, vocab, scale, TRANSFORM, PRECISE, BLOCK, NC, STAGES)
                    have_hist = tl.full((), 1, tl.int1)
                kth_key, n_ge, listed = _radix_select(row_ptr, vocab, scale, k_eff, hist0, tile_x, tile_i,
                                                      TRANSFORM, PRECISE, BLOCK, CAP, EARLY_TILE, STAGES)
            kth = key_value(kth_key)

        # ---- min_tokens_to_keep: the keep-th largest value survives top-p and min-p (ties kept)
        keep_floor = m
        if MIN_KEEP_GT1:
            keep = tl.minimum(min_keep, vocab).to(tl.int64)
            if (listed > 0) & (listed <= CAP):  # the top-k tile holds every entry >= kth, so the keep-th largest
                floor_key, n_floor = _tile_kth(tile_x, listed, keep, CAP)
            else:
                if ~have_hist:
                    hist0 = _top_byte_hist(row_ptr, vocab, scale, TRANSFORM, PRECISE, BLOCK, NC, STAGES)
                floor_key, n_floor, _ = _radix_select(row_ptr, vocab, scale, keep, hist0, cand_x_ptr, cand_i_ptr,
                                                      TRANSFORM, PRECISE, BLOCK, CAP, False, STAGES)
            keep_floor = key_value(floor_key)

        topp_on = tl.full((), 0, tl.int1)
        minp_on = tl.full((), 0, tl.int1)
        threshold = tl.full((), 0.0, tl.float32)
        min_p32 = tl.full((), 0.0, tl.float32)
        if use_top_p != 0:
            p = tl.load(top_p_ptr + row)
            topp_on = (p < 1.0) & (~bad)
            threshold = (1.0 - p).to(tl.float32)
        if use_min_p != 0:
            min_p = tl.load(min_p_ptr + row)
            minp_on = (min_p > 0.0) & (~bad)
            min_p32 = min_p.to(tl.float32)

        best = tl.full((), neg_inf, tl.float32)
        best_idx = tl.full((), 0, tl.int64)
        z_final = tl.full((), 0.0, tl.float32)
        seed = tl.full((), 0, tl.int64)
        off_lo = tl.full((), 0, tl.uint32)
        off_hi = tl.full((), 0, tl.uint32)
        if WANT_TOKENS:
            seed = tl.load(seed_ptr + row)
            offset = tl.load(offset_ptr + row)
            off_lo = (offset & 0xFFFFFFFF).to(tl.uint32)
            off_hi = ((offset >> 32) & 0xFFFFFFFF).to(tl.uint32)

        # ---- candidate path: after top-k, at most CAP entries (k plus ties) can survive. They are
        # copied once to a per-row buffer and top-p, min-p and the sample run on that tile, instead of
        # ~8 more passes over the row. Only when no full row is written (the decode-loop case).
        use_tile = tl.full((), 0, tl.int1)
        if TILE:
            use_tile = (n_ge <= CAP) & (kth == kth)

        # ---- top-p tile (_top_p_tile): top-p without an active top-k, in the decode-loop call
        z = tl.full((), 1.0, tl.float32)
        n_kept = tl.full((), 0, tl.int32)
        have_z = tl.full((), 0, tl.int1)
        use_ptile = tl.full((), 0, tl.int1)
        ptile_n = tl.full((), 0, tl.int32)
        below_key = tl.full((), _BELOW_KEYS, tl.int64)  # the tile's lower bound: every key above it is on it
        below_mass = tl.full((), 0.0, tl.float32)  # and the mass of the row's entries at or below it
        if PTILE:
            if topp_on & (~use_tile) & (kth == neg_inf) & (vocab > PCAP):
                if SPLIT:  # over the slices' folded classes (splits x FOLD)
                    p_bound = split_class_bound(parts_ptr, row, splits, p_rank, FOLD, REC, UNION)
                else:
                    p_bound = class_bound(cmax, p_rank, NC, NC)
                z, n_kept, use_ptile, ptile_n, below_key, below_mass = _top_p_tile(
                    row_ptr, vocab, scale, m, kth, keep_floor, threshold, p_bound, tile_x, tile_i, TRANSFORM, PRECISE,
                    BLOCK, PCAP, STAGES)
                have_z = tl.full((), 1, tl.int1)

        if use_tile | use_ptile:
            written = ptile_n
            if use_tile:
                if listed > 0:  # the select's tile holds every entry >= kth: no more reads of the row
                    written = _keep_from_kth(tile_x, tile_i, listed, kth, CAP)
                else:
                    written = _copy_candidates(row_ptr, 0, vocab, scale, kth, tile_x, tile_i, TRANSFORM, PRECISE,
                                               BLOCK, CAP, STAGES)
            tl.debug_barrier()  # the tile is read back by other threads of this program
            if use_tile:  # the top-k tile holds the whole filtered row
                best, best_idx, z_final = _finish_on_tile(
                    tile_x, tile_i, written, m, z, False, keep_floor, topp_on, threshold, minp_on, min_p32, below_key,
                    below_mass, seed, off_lo, off_hi, WANT_LOGPROBS, PRECISE, NP, CAP)
            else:  # the top-p tile does not: the row's Z
                best, best_idx, z_final = _finish_on_tile(
                    tile_x, tile_i, written, m, z, True, keep_floor, topp_on, threshold, minp_on, min_p32, below_key,
                    below_mass, seed, off_lo, off_hi, WANT_LOGPROBS, PRECISE, NP, PCAP)
        else:
            # ---- Z: softmax denominator of the top-k filtered row, and how many entries it has (taken
            # already when the top-p tile was tried)
            if (topp_on | minp_on) & (~have_z):
                z, n_kept, unused_on, unused_below = _row_mass(row_ptr, vocab, scale, m, kth, 0, cand_x_ptr,
                                                               cand_i_ptr, TRANSFORM, PRECISE, BLOCK, CAP, False,
                                                               STAGES)

            # ---- top-p: the largest key `cut` with mass(key <= cut) <= (1 - p) * Z. First a pivot search
            # in value space over the row, each pass shrinking (lo, hi) ~NP x in entries, until at
            # most PCAP entries lie strictly between; those are copied to a tile and the exact key is
            # found there. lo starts where all V entries below it weigh less than the target (with a 5%
            # margin for the float sums; a start that is not feasible after all falls back to m - 200,
            # below which every weight is exactly 0).
            cut = tl.full((), _BELOW_KEYS, tl.int32)  # below every key: nothing removed
            z_kept = z
            if topp_on:
                target = threshold * z
                if z <= target:
                    cut = float_key(m)  # top_p 0: everything is at or below the threshold; the kept floor survives
                    z_kept = tl.full((), 0.0, tl.float32)
                else:
                    floor_v = m - 200.0
                    hi_v = m
                    lo_v = tl.maximum(m + tl.log(target / vocab) - 0.05, floor_v)
                    lo_mass = tl.full((), 0.0, tl.float32)
                    lo_cnt = tl.full((), 0, tl.int32)
                    hi_cnt = n_kept
                    fractions = tl.arange(0, NP).to(tl.float32) * (1.0 / NP)  # pivot 0: lo (first pass)
                    first = tl.full((), 1, tl.int1)
                    searching = tl.full((), 1, tl.int1)
                    while searching:
                        pivots = lo_v + (hi_v - lo_v) * fractions
                        # After the first pass lo is feasible and its mass and count are known, so pivot 0
                        # takes the largest value below hi instead: the count below hi, without which
                        # a row whose maximum repeats (a flat row) shrank (lo, hi) towards hi one pass at a
                        # time (76 passes on a row of zeros) while its count at hi stayed over PCAP.
                        hi_key = float_key(hi_v).to(tl.int64)
                        below_hi = key_value(hi_key - 1)
                        below_hi = tl.where(below_hi == hi_v, key_value(hi_key - 2), below_hi)  # -0.0 == +0.0
                        pivots = tl.where((fractions == 0.0) & (~first), below_hi, pivots)
                        acc, cnt = _pivot_masses(row_ptr, vocab, scale, m, kth, pivots, TRANSFORM, PRECISE, BLOCK_P,
                                                 NP, STAGES)
                        feasible = acc <= target
                        # none feasible: the first pass's lo was not after all (float sums): below m - 200
                        # every weight is 0; later lo stays
                        base_v = tl.where(first, floor_v, lo_v)
                        new_lo = tl.max(tl.where(feasible, pivots, base_v), axis=0)
                        new_lo_mass = tl.max(tl.where(feasible, acc, tl.where(first, 0.0, lo_mass)), axis=0)
                        new_lo_cnt = tl.max(tl.where(feasible, cnt, tl.where(first, 0, lo_cnt)), axis=0)
                        first = tl.full((), 0, tl.int1)
                        new_hi = tl.min(tl.where(feasible, hi_v, pivots), axis=0)
                        new_hi_cnt = tl.min(tl.where(feasible, hi_cnt, cnt), axis=0)
                        # no pivot strictly inside (lo, hi): they are adjacent floats, nothing lies between
                        progress = (new_lo != lo_v) | (new_hi != hi_v)
                        lo_v = new_lo
                        hi_v = new_hi
                        lo_mass = new_lo_mass
                        lo_cnt = new_lo_cnt
                        hi_cnt = new_hi_cnt
                        searching = progress & (hi_cnt - lo_cnt > PCAP)
                    # the entries strictly between lo and hi (at most PCAP) go to the tile
                    written = _copy_between(row_ptr, vocab, scale, kth, lo_v, hi_v, tile_x, TRANSFORM, PRECISE, BLOCK,
                                            PCAP, STAGES)
                    tl.debug_barrier()  # the tile is read back by other threads of this program
                    offs = tl.arange(0, PCAP)
                    valid = offs < written
                    xs = tl.load(tile_x + offs, mask=valid, other=float("-inf"))
                    ws = tl.where(valid, tl.exp(xs - m), 0.0)
                    cut, lo_mass = _refine_cut(float_key(xs), ws, float_key(lo_v).to(tl.int64),
                                               float_key(hi_v).to(tl.int64), lo_mass, target, NP)
                    z_kept = z - lo_mass
                if minp_on:
                    # min-p normalises by the softmax of the top-p filtered row: its own sum, so that the
                    # fused chain and the standalone masks applied one after another decide alike.
                    z_kept = tl.full((), 0.0, tl.float32)
                    for start in tl.range(0, vocab, BLOCK, num_stages=STAGES):
                        cols = start + tl.arange(0, BLOCK)
                        mask = cols < vocab
                        x = load_row(row_ptr, cols, mask, scale, TRANSFORM, PRECISE)
                        kept = mask & (x >= kth) & ((float_key(x) > cut) | (x >= keep_floor))
                        z_kept += tl.sum(tl.where(kept, tl.exp(x - m), 0.0), axis=0)

            min_p_cut = tl.full((), 0.0, tl.float32)
            if minp_on:
                min_p_cut = min_p32 * tl.math.div_rn(1.0, z_kept)

            # ---- final pass: write outputs, sample
            best, best_idx, z_final = _final_pass(
                row_ptr, vocab, scale, m, kth, keep_floor, topp_on, cut, minp_on, z_kept, min_p_cut,
                rows_ptr + row * vocab, filter_value, seed, off_lo, off_hi, TRANSFORM, PRECISE, BLOCK, WRITE_FILTERED,
                WRITE_KEPT_INPUT, WANT_TOKENS, WANT_LOGPROBS, STAGES)
        if WANT_TOKENS:
            tl.store(tokens_ptr + row, best_idx)
            if WANT_LOGPROBS:
                x_tok = load_row(row_ptr, best_idx, True, scale, TRANSFORM, PRECISE)
                lp = (x_tok - m) - precise_log(z_final, PRECISE)
                lp = tl.where(best == neg_inf, neg_inf, lp)
                tl.store(logprobs_ptr + row, lp)


@triton.jit
def _temperature_kernel(x_ptr, stride, vocab, temp_ptr, out_ptr, TRANSFORM: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < vocab
    x = load_row(x_ptr + row * stride, cols, mask, _row_scale(temp_ptr, row, TRANSFORM), TRANSFORM, False)
    tl.store(out_ptr + row * vocab + cols, x, mask=mask)


@triton.jit
def _argmax_range(row_ptr, lo, hi, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """(largest non-NaN value, its lowest column) over columns [lo, hi); (-inf, 0) when none.

    Each block position keeps its own best value and earliest column (strict >: ties keep the
    earlier), reduced across the block once after the loop: no cross-warp reduction (and its
    barriers) per step."""
    best_v = tl.full([BLOCK], float("-inf"), tl.float32)
    best_c = tl.zeros([BLOCK], dtype=tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(row_ptr + cols, mask=cols < hi, other=float("-inf")).to(tl.float32)
        better = tl.where(x != x, float("-inf"), x) > best_v
        best_v = tl.where(better, x, best_v)
        best_c = tl.where(better, cols.to(tl.int32), best_c)  # int32 whatever lo's type (a split's is int64)
    best = tl.max(best_v, axis=0)
    return best, tl.min(tl.where(best_v == best, best_c, 2147483647), axis=0).to(tl.int64)


@triton.jit(do_not_specialize=["n_rows"])
def _greedy_kernel(x_ptr, stride, vocab, n_rows, out_ptr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    for program_row in range(tl.program_id(0), n_rows, tl.num_programs(0)):  # persistent: see row_programs
        row = tl.full((), 0, tl.int64) + program_row  # int64 (the interpreter gives a Python int)
        _, best_idx = _argmax_range(x_ptr + row * stride, 0, vocab, BLOCK, STAGES)
        tl.store(out_ptr + row, best_idx)


@triton.jit
def _greedy_split_kernel(x_ptr, stride, vocab, slice_len, best_ptr, idx_ptr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """Greedy over slice ``program_id(1)`` of the row: its (best, lowest column) for _greedy_merge_kernel."""
    row = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1)
    lo = s.to(tl.int64) * slice_len
    best, best_idx = _argmax_range(x_ptr + row * stride, lo, tl.minimum(lo + slice_len, vocab), BLOCK, STAGES)
    tl.store(best_ptr + row * tl.num_programs(1) + s, best)
    tl.store(idx_ptr + row * tl.num_programs(1) + s, best_idx)


@triton.jit(do_not_specialize=["splits"])
def _greedy_merge_kernel(best_ptr, idx_ptr, out_ptr, splits, SPLITS_P2: tl.constexpr):
    """The row's token: the lowest column among the slices holding the largest value; 0 when every
    slice has none (all -inf / NaN), as the one-program kernel."""
    row = tl.program_id(0).to(tl.int64)
    sl = tl.arange(0, SPLITS_P2)
    ok = sl < splits
    best = tl.load(best_ptr + row * splits + sl, mask=ok, other=float("-inf"))
    idx = tl.load(idx_ptr + row * splits + sl, mask=ok, other=0)
    top = tl.max(best, axis=0)
    tl.store(out_ptr + row, tl.min(tl.where(ok & (best == top), idx, 9223372036854775807), axis=0))


# --------------------------------------------------------------------------- launchers
def _chain(
    x: torch.Tensor,
    *,
    transform: int = T_NONE,
    temperature: torch.Tensor | None = None,
    top_k: torch.Tensor | None = None,
    top_p: torch.Tensor | None = None,
    min_p: torch.Tensor | None = None,
    min_keep: int = 1,
    seed: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    tokens: bool = False,
    logprobs: bool = False,
    filtered: bool = False,
    filter_value: float = _NEG_INF,
    kept_input: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Launch the chain kernel; returns (tokens, logprobs, rows), None where not asked."""
    x = rows_2d(x)
    batch, vocab = x.shape
    device = x.device
    tok = torch.empty(batch, dtype=torch.int64, device=device) if tokens else None
    lp = torch.empty(batch, dtype=torch.float32, device=device) if logprobs else None
    rows = torch.empty((batch, vocab), dtype=torch.float32, device=device) if (filtered or kept_input) else None
    if batch == 0:
        return tok, lp, rows
    if transform == T_DIVIDE and not interpreting(x):
        transform = T_MUL_RECIP  # what torch computes for `logits / t` on CUDA (see the reference)
    dummy = x
    interpret = interpreting(x)
    block = block_for(vocab, interpret=interpret)
    # The candidate tile (see the kernel) serves calls that write no full row and have a top-k.
    tile = tokens and not (filtered or kept_input) and top_k is not None
    early = early_tile()  # PYDECODE_TRITON_EARLY_TILE: the early tiles of the top-k select and of top-p
    pivots = pivot_count(_NUM_PIVOTS)  # PYDECODE_TRITON_PIVOTS
    stages = row_stages()  # PYDECODE_TRITON_STAGES
    # the top-p tile (see the kernel) serves the same calls with a top-p instead, one program per row
    ptile = early and tokens and not (filtered or kept_input) and top_p is not None
    # Per-row scratch for the top-k select's tile and the candidate tile (cap entries), the top-p
    # tile and the top-p boundary tile (pcap >= cap entries).
    # Unused tiles still need their element types: the kernel's tile code is compiled for runtime
    # flags (a float16 dummy there failed to compile for sm_90; bench/triton_compile_check.py).
    scratch = top_k is not None or top_p is not None
    cap = _CAP if scratch else 16
    pcap = _P_CAP if top_p is not None else cap
    cand_x = torch.empty((batch, pcap) if scratch else (1,), dtype=torch.float32, device=device)
    cand_i = torch.empty((batch, pcap) if top_k is not None or ptile else (1,), dtype=torch.int32, device=device)
    # The split path serves the candidate-tile calls (tokens, a top-k, no full row written) when the
    # class bound selects the top-k: one pass over `splits` slices of each row, the rest per row.
    splits = split_count(batch, vocab, x, min_vocab=SAMPLING_SPLIT_MIN_VOCAB) if tile and early else 1
    parts, part_x, part_i, part_n = cand_i, cand_x, cand_i, cand_i  # typed dummies
    fold = 16
    if splits > 1:
        sp = split_rows(batch, vocab, splits, _CAP, x)
        splits, fold, parts, part_x, part_i, part_n = sp.splits, sp.fold, sp.parts, sp.part_x, sp.part_i, sp.part_n
        launch(_split_pass_kernel)[(batch, splits)](
            x, x.stride(0), vocab, dummy if temperature is None else temperature.contiguous(), top_k.contiguous(),
            min_keep, parts, part_x, part_i, part_n, splits, sp.slice_len,
            TRANSFORM=transform, PRECISE=precise_log_available(x), BLOCK=sp.block, CAP=_CAP, NC=sp.classes,
            NCS=min(sp.classes, _CAP), NCK=min(block, CLASSES, _CAP), FOLD=fold, REC=sp.rec, STAGES=stages,
            num_warps=8 if sp.block >= 1024 else 4,
        )
    launch(_filter_chain_kernel)[(row_programs(batch, x),)](
        x, x.stride(0), vocab, batch,
        dummy if temperature is None else temperature.contiguous(),
        dummy if top_k is None else top_k.contiguous(),
        dummy if top_p is None else top_p.contiguous(),
        dummy if min_p is None else min_p.contiguous(),
        min_keep,
        dummy if seed is None else seed.contiguous(),
        dummy if offset is None else offset.contiguous(),
        dummy if tok is None else tok,
        dummy if lp is None else lp,
        dummy if rows is None else rows,
        float(filter_value),
        # which filters exist are runtime flags: one compiled variant serves every mask op
        int(top_k is not None), int(top_p is not None), int(min_p is not None),
        cand_x, cand_i,
        parts, part_x, part_i, part_n, splits,
        # the top-p tile's class-bound rank over the row's classes (min(BLOCK, CLASSES)) or a split row's
        _p_tile_rank(vocab, splits * fold if splits > 1 else min(block, CLASSES)),
        TRANSFORM=transform, MIN_KEEP_GT1=min_keep > 1, WANT_TOKENS=tokens, WANT_LOGPROBS=logprobs,
        WRITE_FILTERED=filtered, WRITE_KEPT_INPUT=kept_input, PRECISE=precise_log_available(x), BLOCK=block,
        # the pivot pass holds a (BLOCK_P, NP) tile of 8192: 2048 x 4 stays in registers on a GPU (no
        # spills on sm_90) and takes ~78 instructions per element against 94 at 512 rows
        BLOCK_P=min(block, 4096 if interpret else 8192 // pivots), NP=pivots, TILE=tile, CAP=cap, PCAP=pcap,
        SPLIT=splits > 1, EARLY_TILE=early and top_k is not None, PTILE=ptile,
        NC=min(block, CLASSES), NCK=min(block, CLASSES, _CAP),  # the class bound's column classes
        FOLD=fold, REC=4 + fold, UNION=triton.next_power_of_2(splits * fold),  # the split path's records
        STAGES=stages, num_warps=8 if block >= 1024 else 4,
    )
    return tok, lp, rows


@register("apply_temperature", "triton")
def apply_temperature_triton(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    x = rows_2d(logits)
    batch, vocab = x.shape
    out = torch.empty((batch, vocab), dtype=torch.float32, device=x.device)
    if batch == 0:
        return out
    block = block_for(vocab, 1024, interpreting(x))
    transform = T_DIVIDE if interpreting(x) else T_MUL_RECIP
    launch(_temperature_kernel)[(batch, triton.cdiv(vocab, block))](
        x, x.stride(0), vocab, temperature.contiguous(), out, TRANSFORM=transform, BLOCK=block
    )
    return out


@register("top_k_mask_logits", "triton")
def top_k_mask_logits_triton(
    logits: torch.Tensor, top_k: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    # min_tokens_to_keep only raises k here (transformers' TopK), so it does not need the keep floor.
    k = torch.clamp(top_k, min=min_tokens_to_keep) * (top_k > 0) if min_tokens_to_keep > 1 else top_k
    return _chain(logits, top_k=k, filtered=True, filter_value=filter_value)[2]


@register("top_p_mask_logits", "triton")
def top_p_mask_logits_triton(
    logits: torch.Tensor, top_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    return _chain(logits, top_p=top_p, min_keep=min_tokens_to_keep, filtered=True, filter_value=filter_value)[2]


@register("min_p_mask_logits", "triton")
def min_p_mask_logits_triton(
    logits: torch.Tensor, min_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    return _chain(logits, min_p=min_p, min_keep=min_tokens_to_keep, filtered=True, filter_value=filter_value)[2]


def _renormalised(kept: torch.Tensor | None) -> torch.Tensor:
    # The kernel writes the kept probabilities (0 elsewhere); the row sum and division are
    # torch's, so they round like the reference's.
    assert kept is not None
    total = kept.sum(dim=-1, keepdim=True)
    return torch.where(total == 0, 0.0, kept / total)


@register("top_k_renorm_probs", "triton")
def top_k_renorm_probs_triton(probs: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    return _renormalised(_chain(probs, transform=T_LOG, top_k=top_k, kept_input=True)[2])


@register("top_p_renorm_probs", "triton")
def top_p_renorm_probs_triton(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    return _renormalised(_chain(probs, transform=T_LOG, top_p=top_p, kept_input=True)[2])


@register("greedy", "triton")
def greedy_triton(logits: torch.Tensor) -> torch.Tensor:
    x = rows_2d(logits)
    batch, vocab = x.shape
    out = torch.empty(batch, dtype=torch.int64, device=x.device)
    if batch == 0:
        return out
    splits = split_count(batch, vocab, x, min_vocab=NEVER)  # split only when forced (see NEVER)
    if splits > 1:
        slice_len, splits = slices(vocab, splits)
        block = block_for(slice_len, 4096, interpreting(x))
        best = torch.empty((batch, splits), dtype=torch.float32, device=x.device)
        idx = torch.empty((batch, splits), dtype=torch.int64, device=x.device)
        launch(_greedy_split_kernel)[(batch, splits)](x, x.stride(0), vocab, slice_len, best, idx, BLOCK=block,
                                                      STAGES=row_stages(), num_warps=8 if block >= 2048 else 4)
        launch(_greedy_merge_kernel)[(batch,)](best, idx, out, splits,
                                               SPLITS_P2=max(16, triton.next_power_of_2(splits)))
        return out
    block = block_for(vocab, 4096, interpreting(x))
    launch(_greedy_kernel)[(row_programs(batch, x),)](x, x.stride(0), vocab, batch, out, BLOCK=block,
                                                      STAGES=row_stages(), num_warps=8 if block >= 2048 else 4)
    return out


@register("filter_and_sample", "triton")
def filter_and_sample_triton(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    min_tokens_to_keep: int,
    seed: torch.Tensor,
    offset: torch.Tensor,
    return_logprobs: bool,
    return_filtered: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens, logprobs, filtered = _chain(
        logits, transform=T_DIVIDE, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        min_keep=min_tokens_to_keep, seed=seed, offset=offset, tokens=True, logprobs=return_logprobs,
        filtered=return_filtered,
    )
    assert tokens is not None
    empty = logits.new_empty((0,), dtype=torch.float32)
    return (
        tokens,
        logprobs if logprobs is not None else empty,
        filtered if filtered is not None else empty.clone(),
    )


@register("sampling_from_probs", "triton")
def sampling_from_probs_triton(
    probs: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
) -> torch.Tensor:
    tokens = _chain(probs, transform=T_LOG, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, offset=offset,
                    tokens=True)[0]
    assert tokens is not None
    return tokens
