"""Triton backend of the n-gram and sequence-bias ops (references: ``pydecode.ops.ngram``:
``no_repeat_ngram_mask_torch``, ``encoder_no_repeat_ngram_mask_torch``, ``sequence_bias_torch``;
``bad_words_mask`` runs ``sequence_bias``).

Each op is a float32 copy of the logits (``_copy_rows``) then one sparse kernel, one program
per row, that writes only the columns it bans or biases.

* No-repeat n-grams: lanes are window starts; a window whose first ``n - 1`` ids equal the
  row's current suffix bans its last id. Every write is ``-inf``, so duplicates are harmless.
* Sequence bias: transformers adds, per token, ``0.0 + single bias`` then each matched longer
  sequence's bias in table order, then ``scores + bias``. The launcher merges single-token and
  longer sequences (singles first, with an always-matching prefix) and sorts them stably by
  last token, once per table (cached on the table's tensors); in the kernel the first entry of
  each last-token group walks its group in table order, accumulating exactly the reference's
  float32 sum, and alone writes ``x + sum``. Untouched columns get ``x + 0.0`` from the copy
  (``-0.0`` becomes ``+0.0`` there, as in the reference).
"""

from __future__ import annotations

import weakref

import torch
import triton
import triton.language as tl

from pydecode.ops._registry import register

from ._common import launch
from ._copy_rows import float32_copy, load_f32, tile

# ngram.py's padding values: a prefix entry of -1 matches any token; input positions before the
# start of a short row are -2, which no prefix entry equals.
_PREFIX_PAD = -1
_INPUT_PAD = -2


@triton.jit(
    do_not_specialize=["batch", "vocab", "ids_sb", "ids_sl", "ids_len", "src_sb", "src_sl", "src_len", "group", "ngram"]
)
def _ngram_ban_kernel(
    out_ptr, batch, vocab, ids_ptr, ids_sb, ids_sl, ids_len, src_ptr, src_sb, src_sl, src_len, group, ngram,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Row ``row``: suffix = the last ``ngram - 1`` ids of ``ids``; windows come from row
    ``row // group`` of ``src`` (``src`` is ``ids`` itself for the decoder-only mask). The
    launcher guarantees ``ids_len >= ngram - 1`` and ``src_len >= ngram``."""
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = (row_ids < batch)[:, None]
    rows = row_ids.to(tl.int64)[:, None]
    lanes = tl.arange(0, BLOCK)[None, :]
    ids_rows = ids_ptr + rows * ids_sb
    src_rows = src_ptr + (rows // group) * src_sb
    windows = src_len - ngram + 1
    suffix_start = ids_len - (ngram - 1)
    for start in range(0, windows, BLOCK):
        i = start + lanes
        ok = row_ok & (i < windows)
        for j in range(0, ngram - 1):
            want = tl.load(ids_rows + (suffix_start + j).to(tl.int64) * ids_sl, mask=row_ok, other=0)
            got = tl.load(src_rows + (i + j).to(tl.int64) * src_sl, mask=ok, other=0)
            ok = ok & (got == want)
        t = tl.load(src_rows + (i + ngram - 1).to(tl.int64) * src_sl, mask=ok, other=0).to(tl.int64)
        ok = ok & (t >= 0) & (t < vocab)
        tl.store(out_ptr + rows * vocab + t, float("-inf"), mask=ok)


@triton.jit(
    do_not_specialize=["batch", "vocab", "stride_b", "stride_v", "ids_sb", "ids_sl", "ids_len", "entries", "width"]
)
def _sequence_bias_kernel(
    x_ptr, stride_b, stride_v, out_ptr, batch, vocab, ids_ptr, ids_sb, ids_sl, ids_len,
    last_ptr, bias_ptr, prefix_ptr, entries, width,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """``entries`` sequences sorted stably by last token: ``last`` int64, ``bias`` float32,
    ``prefix`` int64 ``(entries, width)`` right-aligned, -1 = any token."""
    row_ids = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = (row_ids < batch)[:, None]
    rows = row_ids.to(tl.int64)[:, None]
    lanes = tl.arange(0, BLOCK)[None, :]
    ids_rows = ids_ptr + rows * ids_sb
    tail_start = ids_len - width
    for start in range(0, entries, BLOCK):
        i = start + lanes + tl.zeros([ROWS, 1], dtype=tl.int32)
        ok = row_ok & (i < entries)
        v = tl.load(last_ptr + i, mask=ok, other=-1)
        before = tl.load(last_ptr + i - 1, mask=ok & (i > 0), other=-1)
        head = ok & ((i == 0) | (before != v))
        # The head walks its group in order: acc = 0.0 + b_1 + b_2 + ... over matched members
        # (an unmatched one adds 0.0, which changes no sum: acc is never -0.0).
        acc = tl.zeros([ROWS, BLOCK], dtype=tl.float32)
        k = i
        active = head
        while tl.max(tl.max(active.to(tl.int32), axis=1), axis=0) > 0:
            member = tl.load(last_ptr + k, mask=active, other=-1)
            active = active & (member == v)
            match = active
            for j in range(0, width):
                pos = tl.zeros([ROWS, 1], dtype=tl.int64) + (tail_start + j)
                token = tl.load(ids_rows + pos * ids_sl, mask=row_ok & (pos >= 0), other=-2)
                want = tl.load(prefix_ptr + k.to(tl.int64) * width + j, mask=active, other=-1)
                match = match & ((want == -1) | (want == token.to(tl.int64)))
            b = tl.load(bias_ptr + k, mask=match, other=0.0)
            acc = acc + tl.where(match, b, 0.0)
            k = k + 1
            active = active & (k < entries)
        ok = head & (v >= 0) & (v < vocab)
        x = load_f32(x_ptr + rows * stride_b + v * stride_v, ok)
        tl.store(out_ptr + rows * vocab + v, x + acc, mask=ok)


# --------------------------------------------------------------------------- launchers
_GPU_LANES = 256


def _ban(logits: torch.Tensor, ids: torch.Tensor, src: torch.Tensor, group: int, ngram: int) -> torch.Tensor:
    out = float32_copy(logits)
    batch, vocab = logits.shape
    windows = src.shape[1] - ngram + 1
    if batch == 0 or vocab == 0 or windows <= 0 or ids.shape[1] < ngram - 1:
        return out
    if ids.numel() == 0:  # ngram_size 1: no suffix to read; never pass a null pointer
        ids = src
    rows, block = tile(batch, windows, logits.device, _GPU_LANES)
    launch(_ngram_ban_kernel)[(triton.cdiv(batch, rows),)](
        out, batch, vocab, ids, ids.stride(0), ids.stride(1), ids.shape[1], src, src.stride(0), src.stride(1),
        src.shape[1], group, ngram, ROWS=rows, BLOCK=block, num_warps=4,
    )
    return out


@register("no_repeat_ngram_mask", "triton")
def no_repeat_ngram_mask_triton(logits: torch.Tensor, input_ids: torch.Tensor, ngram_size: int) -> torch.Tensor:
    return _ban(logits, input_ids, input_ids, 1, ngram_size)


@register("encoder_no_repeat_ngram_mask", "triton")
def encoder_no_repeat_ngram_mask_triton(
    logits: torch.Tensor, input_ids: torch.Tensor, encoder_input_ids: torch.Tensor, ngram_size: int
) -> torch.Tensor:
    rows = encoder_input_ids.shape[0]
    group = max(logits.shape[0] // rows, 1) if rows else 1
    return _ban(logits, input_ids, encoder_input_ids, group, ngram_size)


# One merged, sorted table per SequenceBiasTable (keyed by its tensors' identities, checked
# through weak references so a freed table can never be mistaken for a new one).
_MERGED: dict[tuple[int, ...], tuple[tuple[weakref.ref, ...], tuple[torch.Tensor, ...]]] = {}
_MERGED_MAX = 32


def _merged_table(
    single_ids: torch.Tensor, single_biases: torch.Tensor, prefixes: torch.Tensor,
    last_tokens: torch.Tensor, biases: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(last int64, bias float32, prefix int64 (entries, width)), singles first, sorted stably by
    last token: each token's sequences are contiguous, in the reference's addition order."""
    parts = (single_ids, single_biases, prefixes, last_tokens, biases)
    key = tuple(id(t) for t in parts) + tuple(t._version for t in parts)
    hit = _MERGED.get(key)
    if hit is not None and all(ref() is t for ref, t in zip(hit[0], parts)):
        return hit[1]  # type: ignore[return-value]
    device = last_tokens.device
    width = prefixes.shape[1] if prefixes.dim() == 2 else 0
    singles = single_ids.reshape(-1).to(torch.int64)
    last = torch.cat([singles, last_tokens.reshape(-1).to(torch.int64)])
    bias = torch.cat([single_biases.reshape(-1).to(torch.float32), biases.reshape(-1).to(torch.float32)])
    prefix = torch.cat(
        [
            torch.full((singles.shape[0], width), _PREFIX_PAD, dtype=torch.int64, device=device),
            prefixes.to(torch.int64).reshape(last_tokens.numel(), width),
        ]
    )
    order = torch.sort(last, stable=True).indices
    merged = (last[order].contiguous(), bias[order].contiguous(), prefix[order].contiguous())
    if len(_MERGED) >= _MERGED_MAX:
        _MERGED.clear()
    _MERGED[key] = (tuple(weakref.ref(t) for t in parts), merged)
    return merged


@register("sequence_bias", "triton")
def sequence_bias_triton(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    single_ids: torch.Tensor,
    single_biases: torch.Tensor,
    prefixes: torch.Tensor,
    last_tokens: torch.Tensor,
    biases: torch.Tensor,
) -> torch.Tensor:
    if single_biases.shape != single_ids.shape or biases.shape != last_tokens.shape or prefixes.dim() != 2:
        raise ValueError("malformed sequence bias table: mismatched shapes")
    if prefixes.shape[0] != last_tokens.shape[0]:
        raise ValueError("malformed sequence bias table: prefixes and last_tokens differ in length")
    out = float32_copy(logits, add_zero=True)
    batch, vocab = logits.shape
    last, bias, prefix = _merged_table(single_ids, single_biases, prefixes, last_tokens, biases)
    entries, width = prefix.shape
    if batch == 0 or vocab == 0 or entries == 0:
        return out
    if input_ids.numel() == 0:  # nothing to read (every prefix entry then sees -2); no null pointer
        input_ids = last.view(1, -1)[:, :0].expand(batch, 0)
    rows, block = tile(batch, entries, logits.device, _GPU_LANES)
    launch(_sequence_bias_kernel)[(triton.cdiv(batch, rows),)](
        logits, logits.stride(0), logits.stride(1), out, batch, vocab, input_ids, input_ids.stride(0),
        input_ids.stride(1), input_ids.shape[1], last, bias, prefix if width else last, entries, width,
        ROWS=rows, BLOCK=block, num_warps=4,
    )
    return out
