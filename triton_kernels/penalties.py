"""Triton backend of the penalty ops (references: ``pydecode.ops.penalties``:
``repetition_penalty_torch``, ``encoder_repetition_penalty_torch``,
``presence_frequency_penalty_torch``, ``apply_penalties_torch``, ``apply_penalties_state_torch``).

Each op is a float32 copy of the logits (``_copy_rows``) then one sparse kernel, one program
per row, that touches only the history's columns: O(history) per row, never dense
``(batch, vocab)`` counts.

* Repetition: every listed position rewrites ``out[v] = pen(x[v])`` from the *input* logits,
  so a token listed twice is written twice with the same value (the reference's scatter
  semantics) and no program reads a value it has already penalised.
* Presence/frequency (stateless form): the generated ids of each row are sorted (one
  ``torch.sort`` of ``(batch, gen)`` ids, as the reference does); the first lane of each run
  finds the run's end by binary search, so ``count`` costs O(log gen) and each token is
  written by exactly one lane. The repetition part of the same program runs first; a barrier
  orders the two, so presence/frequency reads the repetition-penalised value.
* :class:`PenaltyState` form: the state lists each row's distinct tokens with their flags and
  counts, so every lane owns one column and the kernel is fully parallel (rows x entries).

Ids outside ``[0, vocab)`` are skipped by the kernels. ``out_of_vocab="raise"`` (``check_vocab``)
is enforced by the public op's Python scan before launch, as negative ids are: the launchers
accept the flag and do not read it.

Exactness: the arithmetic is the reference's, operation for operation, in float32 (see
``pydecode.ops.penalties.hf_penalize``). The repetition penalty ``p`` arrives as float64 rows:
``s * float32(p)`` for ``s < 0``; else ``s / float32(p)`` correctly rounded on CPU tensors (the
interpreter), and on CUDA ``s * float32(1 / p)`` with the reciprocal taken in float64, which is
what torch does on CUDA for transformers' division by a Python float. FMA contraction
is turned off (``enable_fp_fusion=False``): the reference computes
``presence + frequency * count`` as a rounded product, then a rounded sum.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register

from ._common import launch
from ._copy_rows import float32_copy, load_f32, tile

_NO_FMA = {"enable_fp_fusion": False}


@triton.jit
def _rep(s, p64, USE_RECIP: tl.constexpr):
    # transformers: s < 0 ? s * p : s / p, p a Python float (here float64 rows).
    p = p64.to(tl.float32)
    if USE_RECIP:
        # torch on CUDA: s * float32(1.0 / p) with the reciprocal in double. A float64 `/` is
        # correctly rounded (div.rn.f64); only the float32 `/` is approximate (div.full.f32).
        q = s * (1.0 / p64).to(tl.float32)
    else:
        # div_rn, not `/`: triton lowers a float32 `/` to the approximate div.full.f32 on NVIDIA GPUs.
        q = tl.math.div_rn(s, p)
    return tl.where(s < 0, s * p, q)


@triton.jit(
    do_not_specialize=["batch", "vocab", "stride_b", "stride_v", "rep_len", "rep_sb", "rep_sl", "rep_group",
                       "gen_len", "gen_steps"]
)
def _penalties_rows_kernel(
    x_ptr, stride_b, stride_v, out_ptr, batch, vocab,
    rep_ids_ptr, rep_sb, rep_sl, rep_len, rep_group, pen_ptr, ignore_ptr,
    gen_ptr, gen_len, gen_steps, presence_ptr, frequency_ptr,
    HAS_REP: tl.constexpr, HAS_IGNORE: tl.constexpr, USE_RECIP: tl.constexpr, HAS_PF: tl.constexpr,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """``ROWS`` rows per program, ``BLOCK`` history positions per step. ``out`` already holds the
    float32 copy of ``x``.

    Repetition: ids row ``row // rep_group`` (encoder rows serve ``rep_group`` beams), any
    strides; positions below ``ignore[row]`` and ids outside ``[0, vocab)`` are skipped.
    Presence/frequency: ``gen`` is ``(batch, gen_len)`` contiguous int64, each row sorted, with
    dropped positions (masked, or ids >= vocab) set to ``vocab``; ``gen_steps`` >= the bit length
    of ``gen_len`` bounds the binary search.
    """
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = row_ids < batch
    rows = row_ids.to(tl.int64)[:, None]
    lanes = tl.arange(0, BLOCK)[None, :]
    out_rows = out_ptr + rows * vocab
    if HAS_REP:
        p = tl.load(pen_ptr + rows, mask=row_ok[:, None], other=1.0).to(tl.float64)
        first_pos = tl.zeros([ROWS, 1], dtype=tl.int64)
        if HAS_IGNORE:
            first_pos = tl.load(ignore_ptr + rows, mask=row_ok[:, None], other=0)
        ids_rows = rep_ids_ptr + (rows // rep_group) * rep_sb
        for start in range(0, rep_len, BLOCK):
            pos = start + lanes
            ok = row_ok[:, None] & (pos < rep_len) & (pos >= first_pos)
            v = tl.load(ids_rows + pos.to(tl.int64) * rep_sl, mask=ok, other=0).to(tl.int64)
            ok = ok & (v >= 0) & (v < vocab)
            s = load_f32(x_ptr + rows * stride_b + v * stride_v, ok)
            tl.store(out_rows + v, _rep(s, p, USE_RECIP), mask=ok)
    if HAS_PF:
        if HAS_REP:
            # Presence/frequency reads what the repetition part wrote (same program, other lanes).
            tl.debug_barrier()
        presence = tl.load(presence_ptr + rows, mask=row_ok[:, None], other=0.0)
        frequency = tl.load(frequency_ptr + rows, mask=row_ok[:, None], other=0.0)
        gen_rows = gen_ptr + rows * gen_len
        for start in range(0, gen_len, BLOCK):
            pos = start + lanes
            ok = row_ok[:, None] & (pos < gen_len)
            v = tl.load(gen_rows + pos, mask=ok, other=vocab)
            before = tl.load(gen_rows + pos - 1, mask=ok & (pos > 0), other=-1)
            ok = ok & (v >= 0) & (v < vocab) & (before != v)  # the first lane of each run
            # Upper bound of v in [pos + 1, gen_len): the run ends where the ids exceed v.
            # (ROWS, BLOCK) from the start: a loop-carried (1, BLOCK) that the loop widens does
            # not compile (the interpreter accepts it).
            lo = pos + 1 + tl.zeros_like(v)
            hi = tl.zeros_like(v) + gen_len
            for _ in range(gen_steps):
                go = ok & (lo < hi)
                mid = (lo + hi) // 2
                w = tl.load(gen_rows + mid, mask=go, other=0)
                lo = tl.where(go & (w <= v), mid + 1, lo)
                hi = tl.where(go & (w > v), mid, hi)
            count = (lo - pos).to(tl.float32)
            delta = presence + frequency * count
            s = tl.load(out_rows + v, mask=ok, other=0.0)
            tl.store(out_rows + v, s - delta, mask=ok)


@triton.jit(do_not_specialize=["batch", "vocab", "stride_b", "stride_v", "width"])
def _penalties_state_kernel(
    x_ptr, stride_b, stride_v, out_ptr, batch, vocab,
    tokens_ptr, in_rep_ptr, counts_ptr, lengths_ptr, width,
    pen_ptr, presence_ptr, frequency_ptr,
    HAS_REP: tl.constexpr, USE_RECIP: tl.constexpr, HAS_PF: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Grid (row tiles, entry blocks): the live entries of a row are distinct tokens, so each lane
    owns its column and no ordering between programs is needed. State tensors are
    ``(batch, width)`` contiguous; ``out`` already holds the float32 copy of ``x``."""
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = (row_ids < batch)[:, None]
    rows = row_ids.to(tl.int64)[:, None]
    pos = (tl.program_id(1) * BLOCK + tl.arange(0, BLOCK))[None, :]
    length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
    ok = row_ok & (pos < length) & (pos < width)
    entry = rows * width + pos
    v = tl.load(tokens_ptr + entry, mask=ok, other=0)
    ok = ok & (v >= 0) & (v < vocab)
    s = load_f32(x_ptr + rows * stride_b + v * stride_v, ok)
    if HAS_REP:
        p = tl.load(pen_ptr + rows, mask=row_ok, other=1.0).to(tl.float64)
        flagged = tl.load(in_rep_ptr + entry, mask=ok, other=0) != 0
        s = tl.where(flagged, _rep(s, p, USE_RECIP), s)
    if HAS_PF:
        count = tl.load(counts_ptr + entry, mask=ok, other=0)
        presence = tl.load(presence_ptr + rows, mask=row_ok, other=0.0)
        frequency = tl.load(frequency_ptr + rows, mask=row_ok, other=0.0)
        s = tl.where(count > 0, s - (presence + frequency * count.to(tl.float32)), s)
    tl.store(out_ptr + rows * vocab + v, s, mask=ok)


# --------------------------------------------------------------------------- launchers
# History lanes per program on a GPU: histories are hundreds to thousands of ids per row.
_GPU_LANES = 256


def _f32(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.to(torch.float32).contiguous()


def _f64(t: torch.Tensor) -> torch.Tensor:
    # Repetition penalties: float64, so that the CUDA rule takes the reciprocal of the double.
    return t.to(torch.float64).contiguous()


def _use_recip(logits: torch.Tensor, reciprocal: Optional[bool]) -> bool:
    return logits.device.type == "cuda" if reciprocal is None else reciprocal


def _sorted_generated(output_ids: torch.Tensor, output_mask: Optional[torch.Tensor], vocab: int) -> torch.Tensor:
    """Each row's generated ids sorted, dropped positions (masked, ``>= vocab``) set to ``vocab``."""
    ids = output_ids.to(torch.int64).clamp(max=vocab)
    if output_mask is not None:
        ids = ids.masked_fill(~output_mask, vocab)
    return ids.sort(dim=1).values.contiguous()


def _launch(
    logits: torch.Tensor,
    rep_ids: Optional[torch.Tensor],
    rep_group: int,
    penalty: Optional[torch.Tensor],
    ignore: Optional[torch.Tensor],
    output_ids: Optional[torch.Tensor],
    output_mask: Optional[torch.Tensor],
    presence: Optional[torch.Tensor],
    frequency: Optional[torch.Tensor],
    reciprocal: Optional[bool] = None,
) -> torch.Tensor:
    """The float32 copy, then the sparse kernel. ``reciprocal``: the CUDA rule for ``s / p`` (default:
    the logits are on CUDA); tests force it on CPU tensors to run that path under the interpreter."""
    out = float32_copy(logits)
    batch, vocab = logits.shape
    has_rep = penalty is not None and rep_ids is not None and rep_ids.shape[1] > 0
    has_pf = presence is not None and frequency is not None and output_ids is not None and output_ids.shape[1] > 0
    if batch == 0 or vocab == 0 or not (has_rep or has_pf):
        return out
    dummy = out  # an unused pointer argument (its constexpr branch is compiled out)
    rep_len = rep_sb = rep_sl = 0
    pen = ign = gen = pres = freq = dummy
    if has_rep:
        assert rep_ids is not None and penalty is not None
        rep_len, rep_sb, rep_sl = rep_ids.shape[1], rep_ids.stride(0), rep_ids.stride(1)
        pen = _f64(penalty)
        if ignore is not None:
            ign = ignore.to(torch.int64).contiguous()
    gen_len = gen_steps = 0
    if has_pf:
        assert output_ids is not None
        gen = _sorted_generated(output_ids, output_mask, vocab)
        gen_len, gen_steps = gen.shape[1], gen.shape[1].bit_length()
        pres, freq = _f32(presence), _f32(frequency)
    rows, block = tile(batch, max(rep_len, gen_len), logits.device, _GPU_LANES)
    launch(_penalties_rows_kernel)[(triton.cdiv(batch, rows),)](
        logits, logits.stride(0), logits.stride(1), out, batch, vocab,
        rep_ids if has_rep else dummy, rep_sb, rep_sl, rep_len, rep_group, pen, ign,
        gen, gen_len, gen_steps, pres, freq,
        HAS_REP=has_rep, HAS_IGNORE=has_rep and ignore is not None, USE_RECIP=_use_recip(logits, reciprocal),
        HAS_PF=has_pf, ROWS=rows, BLOCK=block, num_warps=4, **_NO_FMA,
    )
    return out


@register("repetition_penalty", "triton")
def repetition_penalty_triton(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    penalty: torch.Tensor,
    prompt_ignore_length: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    return _launch(logits, input_ids, 1, penalty, prompt_ignore_length, None, None, None, None)


@register("encoder_repetition_penalty", "triton")
def encoder_repetition_penalty_triton(
    logits: torch.Tensor, encoder_input_ids: torch.Tensor, inv_penalty: torch.Tensor, check_vocab: bool = False
) -> torch.Tensor:
    # The repetition formula with q = 1 / penalty; encoder row b // group serves logits row b.
    batch = logits.shape[0]
    group = batch // encoder_input_ids.shape[0] if encoder_input_ids.shape[0] else 1
    return _launch(logits, encoder_input_ids, max(group, 1), inv_penalty, None, None, None, None, None)


@register("presence_frequency_penalty", "triton")
def presence_frequency_penalty_triton(
    logits: torch.Tensor,
    output_ids: torch.Tensor,
    presence_penalty: torch.Tensor,
    frequency_penalty: torch.Tensor,
    output_mask: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    return _launch(logits, None, 1, None, None, output_ids, output_mask, presence_penalty, frequency_penalty)


@register("apply_penalties", "triton")
def apply_penalties_triton(
    logits: torch.Tensor,
    input_ids: Optional[torch.Tensor],
    output_ids: Optional[torch.Tensor],
    repetition_penalty: Optional[torch.Tensor],
    presence_penalty: Optional[torch.Tensor],
    frequency_penalty: Optional[torch.Tensor],
    prompt_ignore_length: Optional[torch.Tensor],
    output_mask: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    return _launch(
        logits, input_ids, 1, repetition_penalty, prompt_ignore_length, output_ids, output_mask,
        presence_penalty, frequency_penalty,
    )


@register("apply_penalties_state", "triton")
def apply_penalties_state_triton(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    in_rep: torch.Tensor,
    counts: torch.Tensor,
    lengths: torch.Tensor,
    repetition_penalty: Optional[torch.Tensor],
    presence_penalty: Optional[torch.Tensor],
    frequency_penalty: Optional[torch.Tensor],
    reciprocal: Optional[bool] = None,
) -> torch.Tensor:
    """The triton ``apply_penalties_state``; ``reciprocal`` (tests only) as in :func:`_launch`."""
    batch, vocab = logits.shape
    if in_rep.shape != tokens.shape or counts.shape != tokens.shape or tuple(lengths.shape) != (batch,):
        raise ValueError("tokens, in_rep and counts must share one (batch, capacity) shape, lengths be (batch,)")
    if tokens.shape[0] != batch:
        raise ValueError(f"tokens must have {batch} rows (the batch of logits), got {tokens.shape[0]}")
    out = float32_copy(logits)
    has_rep = repetition_penalty is not None
    has_pf = presence_penalty is not None and frequency_penalty is not None
    width = tokens.shape[1]
    if batch == 0 or vocab == 0 or width == 0 or not (has_rep or has_pf):
        return out
    tokens = tokens.to(torch.int64).contiguous()
    in_rep = in_rep.contiguous().view(torch.int8) if in_rep.dtype == torch.bool else in_rep.to(torch.int8).contiguous()
    counts = counts.to(torch.int32).contiguous()
    lengths = lengths.to(torch.int64).contiguous()
    pen = out if repetition_penalty is None else _f64(repetition_penalty)
    pres, freq = (_f32(presence_penalty), _f32(frequency_penalty)) if has_pf else (out, out)
    rows, block = tile(batch, width, logits.device, _GPU_LANES)
    grid = (triton.cdiv(batch, rows), triton.cdiv(width, block))
    launch(_penalties_state_kernel)[grid](
        logits, logits.stride(0), logits.stride(1), out, batch, vocab,
        tokens, in_rep, counts, lengths, width,
        pen, pres, freq,
        HAS_REP=has_rep, USE_RECIP=_use_recip(logits, reciprocal), HAS_PF=has_pf, ROWS=rows, BLOCK=block,
        num_warps=4,
        **_NO_FMA,
    )
    return out
