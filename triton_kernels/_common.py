"""Helpers shared by the Triton sampling and beam kernels: order-preserving float keys,
row loading with the float32 transform every backend applies, precise logs, launch sizes, radix
digits and the split-row rule (how many programs share a row at small batches)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl

from pydecode.ops._validate import env_count, env_switch

try:  # libdevice's logf / expf are accurate to 1-2 ulp; the interpreter has no libdevice
    from triton.language.extra import libdevice as _libdevice
except ImportError:  # pragma: no cover - very old triton
    _libdevice = None

# Launches inside a pydecode_triton op's body (pydecode/ops/_library.py) go through
# torch.library.wrap_triton, so torch.compile records each kernel in its graph (traces through the
# op) instead of one opaque call. Everywhere else they launch directly: wrap_triton outside an op's
# eager body dispatches through a higher-order op, which costs far more than the launch.
_TRACEABLE = contextvars.ContextVar("pydecode_traceable_launches", default=False)


@contextlib.contextmanager
def traceable_launches() -> Iterator[None]:
    """Within this block, :func:`launch` wraps kernels with ``torch.library.wrap_triton``."""
    token = _TRACEABLE.set(True)
    try:
        yield
    finally:
        _TRACEABLE.reset(token)


def launch(kernel: Any) -> Any:
    """``kernel``, to be launched as ``launch(kernel)[grid](...)``: wrapped for tracing inside
    :func:`traceable_launches`, itself otherwise."""
    if _TRACEABLE.get():
        from torch.library import wrap_triton

        return wrap_triton(kernel)
    return kernel


# Transforms applied to every loaded element (constexpr codes shared by the launchers).
T_NONE, T_DIVIDE, T_MUL_RECIP, T_LOG = 0, 1, 2, 3


@triton.jit
def float_key(x):
    """int32 key ordered like the float32 values; -0.0 is folded onto +0.0 and every NaN onto
    the positive quiet NaN, which ranks above +inf (torch.topk / torch.sort order)."""
    x = tl.where(x == 0.0, 0.0, x)
    x = tl.where(x != x, float("nan"), x)
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


@triton.jit
def key_value(key):
    """Inverse of float_key for a scalar key (int64 holding an int32 value)."""
    k32 = key.to(tl.int32)
    bits = tl.where(k32 < 0, k32 ^ 0x7FFFFFFF, k32)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def precise_log(x, PRECISE: tl.constexpr):
    if PRECISE:
        return _libdevice.log(x)
    else:
        return tl.log(x)


@triton.jit
def precise_exp(x, PRECISE: tl.constexpr):
    """exp(x) as torch computes it on CUDA (libdevice expf, <= 2 ulp) when PRECISE. On NVIDIA,
    tl.exp of float32 is ``ex2.approx(x * log2(e))``, whose product's rounding alone costs up to
    |x| * 2^-24 relative (several ulp of the result at x = -20), so sums of exponentials that set
    a returned score or log-prob take this path."""
    if PRECISE:
        return _libdevice.exp(x)
    else:
        return tl.exp(x)


@triton.jit
def load_row(row_ptr, cols, mask, scale, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr):
    """float32 values of one row block, transformed as torch does it (missing entries: -inf).

    T_DIVIDE: ``x / t`` correctly rounded (torch on CPU); T_MUL_RECIP: ``x * scale`` with
    ``scale = float32(1/t)`` (torch on CUDA turns the division by a scalar into a multiplication
    by its reciprocal, computed in double: see ``sampling._row_scale``);
    T_LOG: ``log(x)`` for probability inputs.
    """
    if TRANSFORM == 3:
        x = tl.load(row_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        return precise_log(x, PRECISE)
    else:
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        if TRANSFORM == 1:
            x = tl.math.div_rn(x, scale)
        elif TRANSFORM == 2:
            x = x * scale
        return x


# PYDECODE_TRITON_EARLY_TILE=0 makes the radix selects of the sampling chain and beam top-k take
# every digit from the row (no early tile: see sampling._radix_select): the same outputs, for the
# benchmarks and tests that compare the two.
EARLY_TILE_ENV = "PYDECODE_TRITON_EARLY_TILE"


def early_tile() -> bool:
    return env_switch(EARLY_TILE_ENV)


# PYDECODE_TRITON_PIVOTS=N (2, 4, 8 or 16, read per call) sets the pivots a pass of the sampling
# chain's top-p search takes (sampling._NUM_PIVOTS by default): the same nucleus up to float
# rounding at its boundary, for the GPU benchmark that weighs fewer instructions against more reads.
PIVOTS_ENV = "PYDECODE_TRITON_PIVOTS"


def pivot_count(default: int) -> int:
    count = env_count(PIVOTS_ENV, "pivots a pass of the top-p search: 2, 4, 8 or 16")
    if count is None:
        return default
    if count not in (2, 4, 8, 16):
        raise ValueError(f"{PIVOTS_ENV} must be 2, 4, 8 or 16 (pivots a pass of the top-p search), got {count}")
    return count


# Row loops are software-pipelined (tl.range num_stages): triton stages the next blocks' loads in
# shared memory (cp.async) while the current one is processed. Without it each loop step issued one
# 16-byte load a thread and waited for it (the SASS of every row pass: one LDG, used a few
# instructions later), and a chain or beam program (8 warps x 255 registers on triton 3.6, over 128 on
# 3.9: bench/triton_resources.py) is alone on its SM, so an SM had ~4 KB of a row in flight where
# HBM's latency needs several times that to stream at its share of the bandwidth. STAGES blocks in
# flight per program (3: ~12 KB of a bfloat16 row) cost ~4-10 instructions per element (the staging's
# shared-memory reads and barriers; bench/triton_pass_cost.py) and change no result (the same loads,
# the same order of operations). PYDECODE_TRITON_STAGES=N sets N (read per
# call; 1 = unpipelined loops), for the GPU benchmark that compares them.
STAGES_ENV = "PYDECODE_TRITON_STAGES"
ROW_STAGES = 3


def row_stages() -> int:
    count = env_count(STAGES_ENV, "loads in flight per row loop: 1 to 8")
    if count is None:
        return ROW_STAGES
    if count > 8:
        raise ValueError(f"{STAGES_ENV} must be 1 to 8 (loads in flight per row loop), got {count}")
    return count


def interpreting(t: torch.Tensor) -> bool:
    """True when kernels on ``t`` run under the Triton interpreter (CPU tensors)."""
    return t.device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def precise_log_available(t: torch.Tensor) -> bool:
    return not interpreting(t) and _libdevice is not None


def rows_2d(x: torch.Tensor) -> torch.Tensor:
    """A (rows, vocab) view whose columns are contiguous (copied when they are not)."""
    return x if x.stride(1) == 1 or x.shape[1] == 1 else x.contiguous()


# The interpreter runs one numpy call per op and loop step, so there blocks take whole rows up
# to this size (tests lower it to run the multi-block paths on small rows).
INTERPRET_BLOCK = 16384


def block_for(vocab: int, cap: int = 2048, interpret: bool = False) -> int:
    """Elements per loop step: on a GPU, 2048 keeps 8 warps busy with 8 elements each."""
    if interpret:
        cap = INTERPRET_BLOCK
    return max(16, min(cap, triton.next_power_of_2(vocab)))


@triton.jit
def radix_digit(hist, bins, prefix, remaining):
    """Choose the next 8-bit digit of the k-th largest key from a 256-bin histogram (bins >= 256
    are ignored); returns the longer prefix, the rank left within it, and the entries at that digit."""
    hist = tl.where(bins < 256, hist, 0)
    suffix = tl.sum(hist, axis=0) - tl.cumsum(hist, axis=0) + hist  # entries with digit >= d
    chosen = tl.max(tl.where((bins < 256) & (suffix >= remaining), bins, 0), axis=0)
    remaining -= tl.sum(tl.where(bins > chosen, hist, 0), axis=0)
    at_digit = tl.sum(tl.where(bins == chosen, hist, 0), axis=0)
    return (prefix << 8) | chosen.to(tl.int64), remaining, at_digit


@triton.jit
def prefix_at_least(x, shift, prefix):
    """Whether each value's unsigned key (float_key + 2^31), shifted right by ``shift``, is >= ``prefix``."""
    return ((float_key(x).to(tl.int64) + 2147483648) >> shift) >= prefix


# A block selecting at most this many entries stores them one by one (append_few) instead of by a
# scan of the block (append_scan): ~6 instructions per element and entry against ~48 for the scan
# and its stores (bench/triton_pass_cost.py). A top-k copy's blocks select 0-3 entries.
FEW = tl.constexpr(4)


@triton.jit
def append_few(values, cols, sel, n, written, dst_x_ptr, dst_i_ptr, CAP: tl.constexpr):
    """append_selected for a block's ``n`` (few) selected entries: each step takes the lowest
    selected column left, so they are stored in column order as by the scan."""
    rest = sel
    bits = values.to(tl.int32, bitcast=True)  # exact, NaN and -0.0 included
    for i in range(0, n):
        col = tl.min(tl.where(rest, cols, 2147483647), axis=0)
        one = rest & (cols == col)
        value = tl.sum(tl.where(one, bits, 0), axis=0).to(tl.float32, bitcast=True)
        tl.store(dst_x_ptr + written + i, value, mask=written + i < CAP)
        tl.store(dst_i_ptr + written + i, col.to(tl.int32), mask=written + i < CAP)
        rest = rest & (cols != col)


@triton.jit
def append_scan(values, cols, sel, written, dst_x_ptr, dst_i_ptr, CAP: tl.constexpr):
    """append_selected's stores by a scan of the block: each selected entry's slot at once."""
    pos = written + tl.cumsum(sel.to(tl.int32), axis=0) - 1
    ok = sel & (pos < CAP)
    tl.store(dst_x_ptr + pos, values, mask=ok)
    tl.store(dst_i_ptr + pos, cols.to(tl.int32), mask=ok)


@triton.jit
def append_selected(values, cols, sel, written, dst_x_ptr, dst_i_ptr, CAP: tl.constexpr):
    """Store a block's ``sel`` entries (float32 values and int32 columns, in column order) after
    the ``written`` already in a CAP-entry buffer; returns the new count (past CAP the writes are
    dropped: callers check the count).

    Most blocks of a top-k or class-bound copy select nothing (they skip the stores: ~24
    instructions per element for the count, bench/triton_pass_cost.py) or a few (append_few)."""
    return append_counted(values, cols, sel, tl.sum(sel.to(tl.int32), axis=0), written, dst_x_ptr, dst_i_ptr, CAP)


@triton.jit
def append_counted(values, cols, sel, n, written, dst_x_ptr, dst_i_ptr, CAP: tl.constexpr):
    """append_selected for a block whose ``n`` selected entries the caller has counted already."""
    if (n > 0) & (written < CAP):
        if n <= FEW:
            append_few(values, cols, sel, n, written, dst_x_ptr, dst_i_ptr, CAP)
        else:
            append_scan(values, cols, sel, written, dst_x_ptr, dst_i_ptr, CAP)
    return written + n


@triton.jit
def key_digit_hist(ukey, valid, shift, prefix):
    """The histogram of the 8-bit digit at ``shift`` of the unsigned keys (float_key + 2^31, int64)
    that are ``valid`` and whose higher digits are ``prefix`` (the others go to an ignored bin)."""
    digit = ((ukey >> shift) & 255).to(tl.int32)
    match = valid & ((ukey >> (shift + 8)) == prefix)
    return tl.histogram(tl.where(match, digit, 256), 512)


@triton.jit
def keys_select(ukey, valid, prefix, remaining, first):
    """The radix select's digits ``first``..3 over a register tile of unsigned keys (``valid`` of
    them; the tile holds every entry whose key prefix is >= ``prefix``, the select's state before
    digit ``first``): returns (prefix, remaining, at_digit) after digit 3, as the row passes would."""
    bins = tl.arange(0, 512)
    at_digit = tl.full((), 0, tl.int32)
    for p in tl.static_range(0, 4):
        if p >= first:
            hist = key_digit_hist(ukey, valid, 24 - 8 * p, prefix)
            prefix, remaining, at_digit = radix_digit(hist, bins, prefix, remaining)
    return prefix, remaining, at_digit


@triton.jit
def tile_keys(tile_ptr, listed, CAP: tl.constexpr):
    """(unsigned keys, valid) of the first ``listed`` float32 values of a CAP-entry tile."""
    offs = tl.arange(0, CAP)
    valid = offs < listed
    return float_key(tl.load(tile_ptr + offs, mask=valid, other=0.0)).to(tl.int64) + 2147483648, valid


@triton.jit
def tile_digit_hist(tile_ptr, listed, shift, prefix, CAP: tl.constexpr):
    """A radix pass over a tile instead of a row: the histogram of the keys' 8-bit digit at
    ``shift`` among the first ``listed`` float32 values whose higher digits are ``prefix``."""
    ukey, valid = tile_keys(tile_ptr, listed, CAP)
    return key_digit_hist(ukey, valid, shift, prefix)


@triton.jit
def tile_select(tile_ptr, listed, prefix, remaining, first, CAP: tl.constexpr):
    """keys_select over the first ``listed`` values of a tile in memory."""
    ukey, valid = tile_keys(tile_ptr, listed, CAP)
    return keys_select(ukey, valid, prefix, remaining, first)


# Column classes whose maxima the statistics passes keep for the class bound (class_maxima; fewer
# when a block is shorter): the top-p tile's bound takes its rank over all of them, the top-k
# selects fold them to their tile's size first (cheaper digit histograms, a few more entries).
CLASSES = 2048


@triton.jit
def class_maxima(kmax, BLOCK: tl.constexpr, NC: tl.constexpr):
    """Fold a row pass's running elementwise maxima of the keys of each block position (``kmax``,
    BLOCK of them) into the maxima of NC column classes (column mod NC; NC divides BLOCK).

    The k-th largest of these NC maxima (k <= NC) is a lower bound of the row's k-th largest key:
    k distinct entries (the maxima of k classes) reach it. So the entries at or above it hold the
    row's top k; with the top entries spread over the classes, as a decode step's logits are, they
    are few more than k (the top-k select's and the top-p tile's class bound)."""
    return tl.max(tl.reshape(kmax, [BLOCK // NC, NC]), axis=0)


@triton.jit
def class_bound(cmax, rank, NC: tl.constexpr, NR: tl.constexpr):
    """The class bound of ``rank`` (<= NR) as an unsigned key (float_key + 2^31): the rank-th
    largest of the NC class maxima ``cmax`` folded to NR classes (class_maxima). Every entry of the
    row's top ``rank`` has a key at or above it."""
    ukeys = class_maxima(cmax, NC, NR).to(tl.int64) + 2147483648
    bound, _, _ = keys_select(ukeys, ukeys >= 0, tl.full((), 0, tl.int64), tl.full((), 0, tl.int32) + rank, 0)
    return bound


# ---- split rows: at small batches a row is spread over `splits` programs (grid rows x splits),
# each taking one slice of its columns in one pass. Each slice keeps a record of REC = 4 + FOLD
# int32 (`parts`): NaN count, maximum's bits, its own class bound (signed key), the largest value it
# did not copy (bits; -inf if none), then its class maxima folded to FOLD classes; and a copy of its
# entries at or above its own bound (`part_x/part_i`, CAP each, count `part_n`). One program per
# row then merges them: maxima and integer counts, and a select over keys, exact in any order.
@triton.jit
def split_record(rec_ptr, m, n_nan, cmax, rank, NC: tl.constexpr, NCS: tl.constexpr, FOLD: tl.constexpr):
    """Store a slice's record (see above) but its last slot; returns the slice's own class bound of
    ``rank`` (int32) as an unsigned key (int64): the rank-th largest of its NC class maxima folded to
    NCS, a lower bound of the slice's rank-th largest key and so of the row's; 0, below every key,
    when rank is not in [1, NCS] (callers pass 0 for rows that copy nothing: no select then)."""
    tl.store(rec_ptr, n_nan)
    tl.store(rec_ptr + 1, m.to(tl.int32, bitcast=True))
    tl.store(rec_ptr + 4 + tl.arange(0, FOLD), class_maxima(cmax, NC, FOLD))
    bound = tl.full((), 0, tl.int64)
    if (rank > 0) & (rank <= NCS):
        bound = class_bound(cmax, rank, NC, NCS)
    tl.store(rec_ptr + 2, (bound - 2147483648).to(tl.int32))
    return bound


@triton.jit
def merged_stats(parts_ptr, row, splits, REC: tl.constexpr, SP2: tl.constexpr):
    """(row maximum, NaN count) merged from the row's slice records (SP2: a power of two >= splits;
    the records are loaded at once, not one slice after another)."""
    t = tl.arange(0, SP2)
    ok = t < splits
    rec = parts_ptr + (row * splits + t) * REC
    n_nan = tl.sum(tl.load(rec, mask=ok, other=0), axis=0)
    m = tl.max(tl.load(rec + 1, mask=ok, other=0xFF800000).to(tl.float32, bitcast=True), axis=0)  # other: -inf
    return m, n_nan


@triton.jit
def split_class_bound(parts_ptr, row, splits, rank, FOLD: tl.constexpr, REC: tl.constexpr, UNION: tl.constexpr):
    """A split row's class bound of ``rank`` (int32) as an unsigned key (int64): the rank-th largest of
    its slices' folded class maxima (splits x FOLD column classes, UNION >= that a power of two, all
    records loaded at once), so a lower bound of the row's rank-th largest key; 0, below every key,
    when rank is over the classes."""
    u = tl.arange(0, UNION)
    t = u // FOLD
    ok = t < splits
    maxima = tl.load(parts_ptr + (row * splits + t) * REC + 4 + u % FOLD, mask=ok, other=0)
    bound, _, _ = keys_select(maxima.to(tl.int64) + 2147483648, ok, tl.full((), 0, tl.int64), rank, 0)
    return tl.where(rank <= splits * FOLD, bound, 0)


@triton.jit
def gather_bounded(parts_ptr, part_x_ptr, part_i_ptr, part_n_ptr, row, splits, rank, dst_x_ptr, dst_i_ptr,
                   CAP: tl.constexpr, FOLD: tl.constexpr, REC: tl.constexpr, UNION: tl.constexpr,
                   STAGES: tl.constexpr):
    """A split row's tile: its entries at or above a lower bound of its rank-th largest key
    (``rank``: int32), gathered from the slices' copies in slice order (so column order) into a
    CAP-entry buffer. Returns (how many, or more than CAP when they do not fit or a slice's copy
    overflowed; the largest value of the row left off the tile, -inf if none, from the slices'
    records and the copies' entries below the bound).

    The bound is the larger of two: the rank-th largest of all slices' folded class maxima
    (splits x FOLD column classes of the row: tight when the top entries are spread), and each
    slice's own bound (split_record: tight when they crowd into one slice). Every entry at or above
    either is on its slice's copy."""
    bound = split_class_bound(parts_ptr, row, splits, rank, FOLD, REC, UNION)
    # the slices' own bounds and largest values left off, all records at once
    s_all = tl.arange(0, UNION // FOLD)
    s_ok = s_all < splits
    rec = parts_ptr + (row * splits + s_all) * REC
    bound = tl.maximum(bound, tl.max(tl.load(rec + 2, mask=s_ok, other=-2147483648).to(tl.int64), axis=0) + 2147483648)
    below = tl.max(tl.load(rec + 3, mask=s_ok, other=0xFF800000).to(tl.float32, bitcast=True), axis=0)  # other: -inf
    offs = tl.arange(0, CAP)
    written = tl.full((), 0, tl.int32)
    overflow = tl.full((), 0, tl.int1)
    # A slice's copy is loaded whole, its count applied after the load (the buffers hold CAP entries
    # each): no load waits for another, so the loop's loads can be staged ahead (STAGES).
    for s in tl.range(0, splits, num_stages=STAGES):
        part = (row * splits + s) * CAP
        n = tl.load(part_n_ptr + row * splits + s)
        xs = tl.load(part_x_ptr + part + offs)
        ids = tl.load(part_i_ptr + part + offs)
        overflow |= n > CAP
        valid = offs < n
        sel = valid & prefix_at_least(xs, 0, bound)
        below = tl.maximum(below, tl.max(tl.where(valid & (~sel), xs, float("-inf")), axis=0))
        written = append_selected(xs, ids, sel, written, dst_x_ptr, dst_i_ptr, CAP)
    return tl.where(overflow, CAP + 1, written), below


class SplitRows(NamedTuple):
    """A split launch's sizes and scratch (split_record's layout): ``parts`` holds the records,
    ``part_x/part_i/part_n`` the slices' copies (``cap`` entries each) and their counts."""

    slice_len: int
    splits: int
    block: int  # elements per loop step of a slice pass
    classes: int  # class maxima a slice keeps (its NC)
    fold: int  # classes a slice's record holds (FOLD)
    parts: torch.Tensor
    part_x: torch.Tensor
    part_i: torch.Tensor
    part_n: torch.Tensor

    @property
    def rec(self) -> int:
        """int32 per record (REC)."""
        return 4 + self.fold


def split_shape(vocab: int, splits: int, cap: int, interpret: bool = False) -> tuple[int, int, int, int, int]:
    """(slice length, slices, block, classes, fold) of a row of ``vocab`` split about ``splits`` ways
    (split_rows' sizes; ``interpret``: the interpreter's blocks). Each slice's class maxima are
    folded so that the row's classes number ``cap`` to 2 x ``cap``: gather_bounded's select runs
    over at most ~2 x cap keys per row, with at least the one-program path's classes."""
    slice_len, splits = slices(vocab, splits)
    block = block_for(slice_len, interpret=interpret)
    classes = min(block, CLASSES)
    fold = min(classes, max(16, triton.next_power_of_2(triton.cdiv(cap, splits))))
    return slice_len, splits, block, classes, fold


def split_rows(rows: int, vocab: int, splits: int, cap: int, x: torch.Tensor) -> SplitRows:
    """Sizes (split_shape) and scratch of ``rows`` rows split about ``splits`` ways (slices)."""
    slice_len, splits, block, classes, fold = split_shape(vocab, splits, cap, interpret=interpreting(x))
    return SplitRows(
        slice_len, splits, block, classes, fold,
        parts=torch.empty((rows, splits, 4 + fold), dtype=torch.int32, device=x.device),
        part_x=torch.empty((rows, splits, cap), dtype=torch.float32, device=x.device),
        part_i=torch.empty((rows, splits, cap), dtype=torch.int32, device=x.device),
        part_n=torch.empty((rows, splits), dtype=torch.int32, device=x.device),
    )


# Programs per row (None: by split_count's rule). Tests set it to force the split path on small
# rows; PYDECODE_TRITON_SPLITS (an integer, read per call) does the same for benchmarks (1: never split).
SPLITS_OVERRIDE: int | None = None
# A slice should amortise its program's fixed costs (the merges read every slice's histograms).
MIN_SLICE = 8192
# Per-op thresholds (split_count's min_vocab) from bench/bench_triton_split.py on an H200, batch 1-8,
# eager calls (bench/results/triton_split_h200_b16b8d9.csv, the class-bound split path): greedy was
# slower split at every shape (77 us split against 51 at vocab 128256: the extra launch costs more
# than the row read saves); beam top-k too (0.73-0.81x at vocab 32000-152064); the sampling chain
# 0.65-0.80x at vocab 32000 and 0.88-1.43x (1.00-1.04 at 128256) from 128256 on.
NEVER = 1 << 62
SAMPLING_SPLIT_MIN_VOCAB = 65536
BEAM_SPLIT_MIN_VOCAB = NEVER


def _forced_count(override: int | None, env: str, meaning: str) -> int | None:
    """A count forced by a test (``override``) or the environment variable ``env``; None if neither."""
    if override is None:
        return env_count(env, meaning)
    if override < 1:
        raise ValueError(f"a forced count must be >= 1 ({meaning}), got {override}")
    return override


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count_of(x: torch.Tensor) -> int:
    """SMs of the GPU holding ``x``."""
    return _sm_count(x.device.index if x.device.index is not None else torch.cuda.current_device())


def split_count(rows: int, vocab: int, x: torch.Tensor, min_vocab: int = 0) -> int:
    """Programs per row: 1 unless the rows are too few to fill the GPU (and the rows have at least
    ``min_vocab`` entries: an op's own measured threshold); then enough slices (of at least
    MIN_SLICE entries) that rows * splits reaches ~2x the SM count. A forced count
    (SPLITS_OVERRIDE, PYDECODE_TRITON_SPLITS) applies to every op."""
    forced = _forced_count(SPLITS_OVERRIDE, "PYDECODE_TRITON_SPLITS", "1: never split")
    if forced is not None:
        return min(forced, vocab)
    if interpreting(x):
        return 1
    sms = _sm_count_of(x)
    if rows >= sms or vocab < min_vocab:
        return 1
    return max(1, min(vocab // MIN_SLICE, triton.cdiv(2 * sms, rows)))


# Programs of the one-program-per-row kernels (None: by row_programs' rule). Tests set it to run
# several rows per program; PYDECODE_TRITON_PROGRAMS (an integer, read per call) does the same for
# benchmarks.
PROGRAMS_OVERRIDE: int | None = None
# Row programs resident per SM that the rule aims at; beyond PROGRAMS_PER_SM x SMs rows, programs
# loop over rows instead of the grid growing. Unmeasured: chosen so that batches up to 256 on an
# H100/H200 (132 SMs, 528 programs) launch one program per row as before.
PROGRAMS_PER_SM = 4


def row_programs(rows: int, x: torch.Tensor) -> int:
    """Grid size of a one-program-per-row kernel over ``rows`` rows (>= 1): persistent programs
    for large batches. Program p runs rows p, p + programs, ...; each row's result does not depend
    on which program runs it."""
    forced = _forced_count(PROGRAMS_OVERRIDE, "PYDECODE_TRITON_PROGRAMS", "programs per launch")
    if forced is not None:
        return max(1, min(forced, rows))
    if interpreting(x):
        return max(1, rows)
    return max(1, min(rows, PROGRAMS_PER_SM * _sm_count_of(x)))


def slices(vocab: int, splits: int) -> tuple[int, int]:
    """(slice length, slice count): equal slices, a multiple of 16 long, none empty."""
    slice_len = triton.cdiv(triton.cdiv(vocab, splits), 16) * 16
    return slice_len, triton.cdiv(vocab, slice_len)
