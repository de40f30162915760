"""Greenlist watermarking (Kirchenbauer et al. 2023, arXiv:2306.04634): add ``bias`` to "green" tokens.

Two schemes:

* transformers' (``seeding_scheme`` ``"lefthash"`` / ``"selfhash"``), bit-identical to
  ``transformers.WatermarkLogitsProcessor`` (5.24) running on CPU: greenlists come from
  ``torch.randperm`` on a CPU ``torch.Generator`` seeded as transformers seeds it, so
  transformers' ``WatermarkDetector`` finds pydecode's watermark and the other way round.
  The greenlists are computed per row on the host (:func:`hf_greenlist_ids`); the only device
  work is one scatter-add of the bias (:func:`watermark_scatter_bias`), the part kernels fuse.
  transformers seeds a generator of the model's device, so on GPU its greenlists differ from
  its own CPU ones; pydecode always uses the CPU stream.
* pydecode's own ``"pydecode-hash"``: membership is a 32-bit integer hash of the key, the
  previous tokens and the candidate token, compared against ``floor(greenlist_ratio * 2**32)``,
  which a kernel computes in registers while it reads the row (no permutation, no host work).
  Definition, all arithmetic modulo ``2**32``::

      mix(x):  x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
      ctx = mix(mix(key & 0xFFFFFFFF) ^ (key >> 32))
      for t in previous context_width tokens, oldest first:  ctx = mix(ctx ^ (t & 0xFFFFFFFF))
      green(v) = mix(ctx ^ (v * 0x9E3779B9)) < floor(greenlist_ratio * 2**32)

  ``mix`` is Chris Wellons' "lowbias32" (a bijection of 32-bit words); ``t`` is the token id
  as a two's complement word. Its detector uses :func:`hash_greenlist_mask`.

Both return float32 logits, a new tensor: green tokens get ``logit + bias`` (one float32
addition, so ``-inf`` stays ``-inf`` and NaN stays NaN), other tokens are copied unchanged.
"""

from __future__ import annotations

import functools
import sys
from typing import Optional

import torch

from . import _cpu
from ._library import call, define_op
from ._registry import register
from ._validate import (
    RowParam,
    check_index_tensor,
    check_int,
    check_logits,
    row_param,
    values_checked,
)

__all__ = [
    "HASH_SCHEME",
    "HF_SCHEMES",
    "hash_greenlist_mask",
    "hf_greenlist_ids",
    "watermark_bias_hash",
    "watermark_bias_hf",
    "watermark_scatter_bias",
]

HF_SCHEMES = ("lefthash", "selfhash")
HASH_SCHEME = "pydecode-hash"

_MASK32 = 0xFFFFFFFF
_MIX_M1 = 0x7FEB352D
_MIX_M2 = 0x846CA68B
_GOLDEN = 0x9E3779B9
# transformers' constants (WatermarkLogitsProcessor): the selfhash lookup table size and the
# number of greedy candidates its rejection sampling tries.
_HF_TABLE_SIZE = 1_000_003
_HF_SELFHASH_CANDIDATES = 40
_HF_SEED_MOD = 2**64 - 1


# --------------------------------------------------------------------------- reference
def _add_bias(x: torch.Tensor, green: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    # where(), not x + bias * green: adding 0.0 would turn -0.0 into +0.0 on other tokens.
    return torch.where(green, x + bias[:, None], x)


@register("watermark_scatter_bias", "torch")
def watermark_scatter_bias_torch(
    logits: torch.Tensor, green_ids: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    out = logits.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    rows, cols = (green_ids >= 0).nonzero(as_tuple=True)
    flat = out.view(-1)
    entries = rows * out.shape[1] + green_ids[rows, cols].to(torch.int64)
    # Each listed (row, id) is one float32 addition of the row's bias, the same `x + bias`
    # transformers computes on its gathered greenlist; an id listed m times gets m additions in a
    # row, ((x + b) + b) + ... Not index_put_(accumulate=True): on CUDA that sums the repeated
    # values first (x + 4b for an id listed four times: 1 ulp off, found on an H200), on CPU not.
    entries, repeats = torch.unique(entries, return_counts=True)
    for times in range(int(repeats.max()) if entries.numel() else 0):
        step = entries[repeats > times]
        flat[step] = flat[step] + bias[step // out.shape[1]]
    return out


define_op(
    "watermark_scatter_bias",
    "(Tensor logits, Tensor green_ids, Tensor bias) -> Tensor",
    lambda logits, green_ids, bias: logits.new_empty(logits.shape, dtype=torch.float32),
)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for x in [0, 2**32) in int64: the full product could overflow int64,
    so c is split into 16-bit halves (each partial product < 2**48)."""
    lo = x * (c & 0xFFFF)
    hi = (x * (c >> 16)) & 0xFFFF
    return (lo + (hi << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_M1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_M2)
    return x ^ (x >> 16)


def _hash_green(
    prev_tokens: torch.Tensor, vocab: int, threshold: torch.Tensor, hashing_key: int
) -> torch.Tensor:
    """``(B, vocab)`` bool greenlist mask of the pydecode-hash scheme (see the module docstring)."""
    device = prev_tokens.device
    rows = prev_tokens.shape[0]
    key = torch.tensor(
        [hashing_key & _MASK32, (hashing_key >> 32) & _MASK32], dtype=torch.int64, device=device
    )
    ctx = _mix32(_mix32(key[:1]) ^ key[1:]).expand(rows)
    prev = prev_tokens.to(torch.int64) & _MASK32
    for j in range(prev.shape[1]):
        ctx = _mix32(ctx ^ prev[:, j])
    # v < 2**31 and the multiplier < 2**32, so the product fits in int64 before masking.
    spread = (torch.arange(vocab, dtype=torch.int64, device=device) * _GOLDEN) & _MASK32
    return _mix32(ctx[:, None] ^ spread[None, :]) < threshold[:, None]


@register("watermark_hash_bias", "torch")
def watermark_hash_bias_torch(
    logits: torch.Tensor,
    prev_tokens: torch.Tensor,
    threshold: torch.Tensor,
    bias: torch.Tensor,
    hashing_key: int,
) -> torch.Tensor:
    green = _hash_green(prev_tokens, logits.shape[1], threshold, hashing_key)
    return _add_bias(logits.to(torch.float32), green, bias)


define_op(
    "watermark_hash_bias",
    "(Tensor logits, Tensor prev_tokens, Tensor threshold, Tensor bias, int hashing_key) -> Tensor",
    lambda logits, prev_tokens, threshold, bias, hashing_key: logits.new_empty(
        logits.shape, dtype=torch.float32
    ),
)


# --------------------------------------------------------------------------- cpu backend
@register("watermark_scatter_bias", "cpu")
def _watermark_scatter_bias_cpu(logits: torch.Tensor, green_ids: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    x = _cpu.rows_view(logits)
    rows, vocab = x.shape
    ids = _cpu.rows_view(green_ids)
    bias = _cpu.contiguous(bias, torch.float32)
    out = torch.empty((rows, vocab), dtype=torch.float32)
    _cpu.module().watermark_scatter_bias(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, _cpu.row_stride(x), ids.data_ptr(),
        ids.dtype == torch.int64, ids.shape[1], _cpu.row_stride(ids), bias.data_ptr(), out.data_ptr(),
    )
    return out


@register("watermark_hash_bias", "cpu")
def _watermark_hash_bias_cpu(
    logits: torch.Tensor,
    prev_tokens: torch.Tensor,
    threshold: torch.Tensor,
    bias: torch.Tensor,
    hashing_key: int,
) -> torch.Tensor:
    x = _cpu.rows_view(logits)
    rows, vocab = x.shape
    prev_tokens = _cpu.contiguous(prev_tokens, torch.int64)
    threshold = _cpu.contiguous(threshold, torch.int64)
    bias = _cpu.contiguous(bias, torch.float32)
    out = torch.empty((rows, vocab), dtype=torch.float32)
    _cpu.module().watermark_hash_bias(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, _cpu.row_stride(x), prev_tokens.data_ptr(),
        prev_tokens.shape[1], threshold.data_ptr(), bias.data_ptr(), hashing_key, out.data_ptr(),
    )
    return out


# --------------------------------------------------------------------------- transformers' greenlists
@functools.lru_cache(maxsize=8)
def _hf_fixed_table(hashing_key: int) -> torch.Tensor:
    # 1M-entry permutation (~35 ms on 2 CPU cores): built once per key, as transformers does in __init__.
    rng = torch.Generator(device="cpu")
    rng.manual_seed(hashing_key)
    return torch.randperm(_HF_TABLE_SIZE, generator=rng)


def _hf_seed(context: torch.Tensor, hashing_key: int, seeding_scheme: str, context_width: int) -> int:
    """transformers' ``set_seed``: the generator seed for a CPU int64 context (>= 1 token)."""
    context = context[-context_width:]
    if seeding_scheme == "selfhash":
        table = _hf_fixed_table(hashing_key)
        a = table[context % _HF_TABLE_SIZE] + 1
        b = table[context[-1] % _HF_TABLE_SIZE] + 1
        # int64 products that wrap around, exactly as transformers' tensor arithmetic does.
        seed = (hashing_key * a * b).min().item()
    else:
        seed = hashing_key * context[-1].item()
    return seed % _HF_SEED_MOD


def _hf_permutation_prefix(seed: int, vocab_size: int, greenlist_size: int) -> torch.Tensor:
    rng = torch.Generator(device="cpu")
    rng.manual_seed(seed)
    return torch.randperm(vocab_size, generator=rng)[:greenlist_size]


def _hf_greenlist_cpu(
    context: torch.Tensor,
    vocab_size: int,
    greenlist_size: int,
    hashing_key: int,
    seeding_scheme: str,
    context_width: int,
    cache: dict,
) -> torch.Tensor:
    seed = _hf_seed(context, hashing_key, seeding_scheme, context_width)
    ids = cache.get((seed, greenlist_size))
    if ids is None:
        ids = cache[(seed, greenlist_size)] = _hf_permutation_prefix(seed, vocab_size, greenlist_size)
    return ids


def _hf_selfhash_cpu(
    context: torch.Tensor,
    scores_row: torch.Tensor,
    vocab_size: int,
    greenlist_size: int,
    hashing_key: int,
    context_width: int,
    cache: dict,
) -> torch.Tensor:
    """transformers' ``_score_rejection_sampling``: keep each of the 40 highest-scored tokens
    whose own greenlist (seeded with the token appended to the context) contains it."""
    _, order = scores_row.sort(dim=-1, descending=True)
    candidates = order[:_HF_SELFHASH_CANDIDATES].cpu()
    context = context[-context_width:]
    kept = []
    for cand in candidates:
        ids = _hf_greenlist_cpu(
            torch.cat([context, cand[None]]),
            vocab_size,
            greenlist_size,
            hashing_key,
            "selfhash",
            context_width,
            cache,
        )
        if bool((ids == cand).any()):
            kept.append(int(cand))
    return torch.tensor(kept, dtype=torch.int64)


def _hf_green_ids(
    scores: torch.Tensor,
    input_ids: torch.Tensor,
    vocab_size: int,
    ratios: list[float],
    hashing_key: int,
    seeding_scheme: str,
    context_width: int,
) -> torch.Tensor:
    """``(B, G)`` int64 greenlist ids on the scores' device, padded with -1: Python loops and
    seeded ``randperm`` calls that ``torch.compile`` must not trace, so they run under
    ``torch.compiler.disable`` -- applied lazily, because it imports ``torch._dynamo`` (~0.4 s,
    which ``import pydecode`` paid before). Without ``torch._dynamo`` loaded nothing compiles."""
    args = (scores, input_ids, vocab_size, ratios, hashing_key, seeding_scheme, context_width)
    if "torch._dynamo" not in sys.modules:
        return _hf_green_ids_eager(*args)
    return _hf_green_ids_disabled()(*args)


@functools.cache
def _hf_green_ids_disabled():  # noqa: ANN202 (a torch.compiler.disable wrapper)
    return torch.compiler.disable(_hf_green_ids_eager)


def _hf_green_ids_eager(
    scores: torch.Tensor,
    input_ids: torch.Tensor,
    vocab_size: int,
    ratios: list[float],
    hashing_key: int,
    seeding_scheme: str,
    context_width: int,
) -> torch.Tensor:
    cache: dict = {}
    ids_cpu = input_ids.to("cpu", torch.int64)
    lists = []
    for b, ratio in enumerate(ratios):
        greenlist_size = int(vocab_size * ratio)
        if seeding_scheme == "selfhash":
            ids = _hf_selfhash_cpu(
                ids_cpu[b], scores[b], vocab_size, greenlist_size, hashing_key, context_width, cache
            )
        else:
            ids = _hf_greenlist_cpu(
                ids_cpu[b], vocab_size, greenlist_size, hashing_key, "lefthash", context_width, cache
            )
        lists.append(ids)
    width = max((len(ids) for ids in lists), default=0)
    padded = torch.full((len(lists), width), -1, dtype=torch.int64)
    for b, ids in enumerate(lists):
        padded[b, : len(ids)] = ids
    return padded.to(scores.device)


# --------------------------------------------------------------------------- public API
def _check_hashing_key(hashing_key: int) -> int:
    hashing_key = check_int(hashing_key, "hashing_key", low=0)
    if hashing_key >= 2**63:
        raise ValueError(f"hashing_key must be in [0, 2**63), got {hashing_key}")
    return hashing_key


def _check_hf_scheme(seeding_scheme: str) -> str:
    if seeding_scheme not in HF_SCHEMES:
        raise ValueError(
            f"seeding_scheme must be one of {HF_SCHEMES} (use watermark_bias_hash for {HASH_SCHEME!r}), "
            f"got {seeding_scheme!r}"
        )
    return seeding_scheme


def _check_ratio_scalar(greenlist_ratio: float) -> float:
    return float(
        row_param(
            greenlist_ratio,
            "greenlist_ratio",
            1,
            torch.device("cpu"),
            dtype=torch.float64,
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        )[0]
    )


def hf_greenlist_ids(
    input_ids_row: torch.Tensor,
    *,
    vocab_size: int,
    greenlist_ratio: float = 0.25,
    hashing_key: int = 15485863,
    seeding_scheme: str = "lefthash",
    context_width: int = 1,
) -> torch.Tensor:
    """transformers' greenlist for one context: ``WatermarkLogitsProcessor._get_greenlist_ids``.

    ``input_ids_row``: 1-D int64/int32 tensor of >= 1 token ids; the seed uses its last token
    (``"lefthash"``) or its last ``context_width`` tokens (``"selfhash"``, whose generation-time
    greenlist for candidate ``v`` is this function of the context with ``v`` appended, which is
    how transformers' detector calls it). Returns the first ``int(vocab_size * greenlist_ratio)``
    entries of the seeded ``torch.randperm(vocab_size)`` (int64, that order), on the input's
    device; the permutation is always drawn on CPU.
    """
    if not isinstance(input_ids_row, torch.Tensor):
        raise TypeError(f"input_ids_row must be a torch.Tensor, got {type(input_ids_row).__name__}")
    check_index_tensor(input_ids_row, "input_ids_row", input_ids_row.device, dim=1)
    if input_ids_row.shape[0] < 1:
        raise ValueError("input_ids_row must hold at least one token")
    vocab_size = check_int(vocab_size, "vocab_size", low=1)
    ratio = _check_ratio_scalar(greenlist_ratio)
    hashing_key = _check_hashing_key(hashing_key)
    seeding_scheme = _check_hf_scheme(seeding_scheme)
    context_width = check_int(context_width, "context_width", low=1)
    ids = _hf_greenlist_cpu(
        input_ids_row.to("cpu", torch.int64),
        vocab_size,
        int(vocab_size * ratio),
        hashing_key,
        seeding_scheme,
        context_width,
        {},
    )
    return ids.to(input_ids_row.device)


def watermark_scatter_bias(
    logits: torch.Tensor, green_ids: torch.Tensor, bias: RowParam = 2.0, *, backend: Optional[str] = None
) -> torch.Tensor:
    """Add ``bias`` to the listed tokens of each row: the device half of the watermark.

    Args:
        logits: ``(B, V)`` float32/float16/bfloat16, any strides; computed in float32.
        green_ids: ``(B, G)`` int64/int32 on the logits' device: token ids in ``[0, V)``, ``-1``
            for padding. Ids should be distinct within a row (a repeated id gets the bias once
            per occurrence, like ``scatter_add``).
        bias: finite float, scalar or ``(B,)`` tensor.

    Returns:
        ``(B, V)`` float32: ``logits + bias`` at the listed ids, ``logits`` elsewhere.
    """
    check_logits(logits)
    batch, vocab = logits.shape
    check_index_tensor(green_ids, "green_ids", logits.device, batch=batch)
    if values_checked() and green_ids.numel() and bool(((green_ids < -1) | (green_ids >= vocab)).any()):
        raise ValueError(f"green_ids must hold token ids in [0, {vocab}) or -1 (padding)")
    bias_rows = _bias_rows(bias, batch, logits.device)
    return call("watermark_scatter_bias", backend, logits, green_ids, bias_rows)


def watermark_bias_hf(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    vocab_size: int,
    greenlist_ratio: RowParam = 0.25,
    bias: RowParam = 2.0,
    hashing_key: int = 15485863,
    seeding_scheme: str = "lefthash",
    context_width: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """transformers' ``WatermarkLogitsProcessor`` (5.24), bit-identical to it on CPU.

    Args:
        logits: ``(B, V)`` float32/float16/bfloat16 scores, any strides; computed in float32.
        input_ids: ``(B, L)`` int64/int32 token ids on the logits' device.
        vocab_size: the tokenizer vocabulary transformers permutes, in ``[1, V]``.
        greenlist_ratio: in ``(0, 1)``, scalar or ``(B,)`` tensor; row ``b`` has
            ``int(vocab_size * ratio_b)`` green tokens (computed in float64, as in Python).
        bias: finite, scalar or ``(B,)`` tensor.
        hashing_key: int in ``[0, 2**63)``.
        seeding_scheme: ``"lefthash"`` (greenlist seeded by the last token) or ``"selfhash"``
            (each of the row's 40 highest-scored tokens is green if it is in the greenlist
            seeded by the last ``context_width - 1`` tokens plus itself).
        context_width: >= 1.

    Returns:
        ``(B, V)`` float32, ``logits + bias`` on the green tokens.

    Like transformers, when ``L < context_width`` no row is biased (transformers also logs a
    warning; pydecode does not). Bad rows: ``-inf`` stays ``-inf`` and NaN stays NaN; selfhash
    ranks candidates with ``torch.sort`` as transformers does (NaN first). Where transformers
    fails, pydecode defines the result: selfhash with ``V < 40`` tries all ``V`` tokens
    (transformers raises ``IndexError``), and a selfhash row with no green candidate is left
    unbiased (transformers raises ``IndexError`` indexing with an empty float tensor).
    """
    check_logits(logits)
    batch, vocab = logits.shape
    check_index_tensor(input_ids, "input_ids", logits.device, batch=batch)
    vocab_size = check_int(vocab_size, "vocab_size", low=1)
    if vocab_size > vocab:
        raise ValueError(f"vocab_size must be in [1, {vocab}] (the logits' width), got {vocab_size}")
    ratio_rows = _ratio_rows(greenlist_ratio, batch, logits.device)
    bias_rows = _bias_rows(bias, batch, logits.device)
    hashing_key = _check_hashing_key(hashing_key)
    seeding_scheme = _check_hf_scheme(seeding_scheme)
    context_width = check_int(context_width, "context_width", low=1)
    if input_ids.shape[1] < context_width:
        return logits.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    # selfhash ranks the candidates on the float32 scores transformers' processors see.
    scores = logits.to(torch.float32).contiguous() if seeding_scheme == "selfhash" else logits
    green_ids = _hf_green_ids(
        scores, input_ids, vocab_size, ratio_rows.tolist(), hashing_key, seeding_scheme, context_width
    )
    return call("watermark_scatter_bias", backend, logits, green_ids, bias_rows)


def hash_greenlist_mask(
    prev_tokens: torch.Tensor,
    vocab: int,
    *,
    greenlist_ratio: RowParam = 0.25,
    hashing_key: int = 15485863,
) -> torch.Tensor:
    """``(B, vocab)`` bool greenlist of the ``"pydecode-hash"`` scheme (for its detector).

    ``prev_tokens``: ``(B, n)`` int64/int32, the ``n`` tokens before the scored position, oldest
    first (``n = context_width``). ``greenlist_ratio`` in ``(0, 1)``, scalar or ``(B,)`` tensor;
    ``hashing_key`` in ``[0, 2**63)``. Pure torch on the tokens' device.
    """
    if not isinstance(prev_tokens, torch.Tensor):
        raise TypeError(f"prev_tokens must be a torch.Tensor, got {type(prev_tokens).__name__}")
    check_index_tensor(prev_tokens, "prev_tokens", prev_tokens.device)
    if isinstance(vocab, bool) or not isinstance(vocab, int) or not 0 <= vocab <= 2**31:
        raise ValueError(f"vocab must be an int in [0, 2**31], got {vocab!r}")
    threshold = _hash_threshold(greenlist_ratio, prev_tokens.shape[0], prev_tokens.device)
    return _hash_green(prev_tokens, vocab, threshold, _check_hashing_key(hashing_key))


def _ratio_rows(greenlist_ratio: RowParam, batch: int, device: torch.device) -> torch.Tensor:
    # float64, so int(V * ratio) and floor(ratio * 2**32) round as Python floats do.
    return row_param(
        greenlist_ratio, "greenlist_ratio", batch, device, dtype=torch.float64, low=0.0, high=1.0,
        low_open=True, high_open=True,
    )


def _bias_rows(bias: RowParam, batch: int, device: torch.device) -> torch.Tensor:
    inf = float("inf")
    return row_param(bias, "bias", batch, device, low=-inf, high=inf, low_open=True, high_open=True)


def _hash_threshold(greenlist_ratio: RowParam, batch: int, device: torch.device) -> torch.Tensor:
    return torch.floor(_ratio_rows(greenlist_ratio, batch, device) * 2.0**32).to(torch.int64)


def watermark_bias_hash(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    greenlist_ratio: RowParam = 0.25,
    bias: RowParam = 2.0,
    hashing_key: int = 15485863,
    context_width: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """pydecode's ``"pydecode-hash"`` watermark: ``bias`` on hash-green tokens (module docstring).

    Args:
        logits: ``(B, V)`` float32/float16/bfloat16, any strides (``V <= 2**31``); computed in float32.
        input_ids: ``(B, L)`` int64/int32 on the logits' device; the last ``context_width``
            tokens seed each row's greenlist.
        greenlist_ratio: in ``(0, 1)``, scalar or ``(B,)`` tensor: token ``v`` is green iff
            its hash is below ``floor(ratio * 2**32)`` (float64), so about ``ratio * V`` tokens are.
        bias: finite, scalar or ``(B,)`` tensor.
        hashing_key: int in ``[0, 2**63)``.
        context_width: >= 1.

    Returns:
        ``(B, V)`` float32. When ``L < context_width`` every row is returned unchanged (as
        float32). ``-inf`` stays ``-inf``, NaN stays NaN.
    """
    check_logits(logits)
    batch, vocab = logits.shape
    if vocab > 2**31:
        raise ValueError(f"logits must have at most 2**31 columns, got {vocab}")
    check_index_tensor(input_ids, "input_ids", logits.device, batch=batch)
    threshold = _hash_threshold(greenlist_ratio, batch, logits.device)
    bias_rows = _bias_rows(bias, batch, logits.device)
    hashing_key = _check_hashing_key(hashing_key)
    context_width = check_int(context_width, "context_width", low=1)
    if input_ids.shape[1] < context_width:
        return logits.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    prev_tokens = input_ids[:, input_ids.shape[1] - context_width :]
    return call("watermark_hash_bias", backend, logits, prev_tokens, threshold, bias_rows, hashing_key)


# --------------------------------------------------------------------------- cuda backend
# csrc/cuda/watermark.cu: the hash scheme in one pass (hash computed in registers while the row
# streams through), the scatter as the float32 copy plus one add per distinct listed id.
from . import _cuda_launch as _cu  # noqa: E402


@register("watermark_scatter_bias", "cuda")
def _watermark_scatter_bias_cuda(logits: torch.Tensor, green_ids: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    # Sorted rows put repeated ids side by side: the kernel adds each run once, as torch's CUDA
    # scatter-add does (a sort of B x G ids: small next to the host work behind HF greenlists).
    ids, (ids_ptr, ids64, n_ids, ids_stride) = _cu.id_args(green_ids.sort(dim=1).values)
    bias = _cpu.contiguous(bias, torch.float32)
    with _cu.on_device(x.device):
        mod.watermark_scatter_bias(
            *args[:5], ids_ptr, ids64, n_ids, ids_stride, bias.data_ptr(), args[5], _cu.stream(x.device)
        )
    return out


@register("watermark_hash_bias", "cuda")
def _watermark_hash_bias_cuda(
    logits: torch.Tensor,
    prev_tokens: torch.Tensor,
    threshold: torch.Tensor,
    bias: torch.Tensor,
    hashing_key: int,
) -> torch.Tensor:
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    prev_tokens = _cpu.contiguous(prev_tokens, torch.int64)
    threshold = _cpu.contiguous(threshold, torch.int64)
    bias = _cpu.contiguous(bias, torch.float32)
    with _cu.on_device(x.device):
        mod.watermark_hash_bias(
            *args[:5], prev_tokens.data_ptr(), prev_tokens.shape[1], threshold.data_ptr(), bias.data_ptr(),
            hashing_key, args[5], _cu.stream(x.device),
        )
    return out
