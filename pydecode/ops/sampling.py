"""Filtering and sampling: temperature, top-k / top-p / min-p masks, renormalised probabilities,
greedy and Philox/Gumbel-max samplers.

Semantics (what every backend must reproduce; the references below are the oracle):

* Logits are processed as a contiguous float32 copy (``logits.float().contiguous()``), as
  transformers' processors see them in ``generate()``, with the same torch op sequence as
  ``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper`` and
  ``MinPLogitsWarper`` (transformers 5.x), so the torch backend is bit-equal to them.
  Per-row parameters generalise their scalar parameter row-wise; a row whose value disables
  the stage (temperature 1, top_k 0, top_p 1, min_p 0) is left unchanged, exactly as
  ``generate()`` leaves the warper out for that value.
* Registered ops receive per-row parameters as ``(batch,)`` tensors on the logits' device:
  ``temperature``, ``top_p`` and ``min_p`` as float64 (so ``1 - top_p`` rounds like
  transformers' Python-float arithmetic before the float32 comparison), ``top_k``, ``seed``
  and ``offset`` as int64.
* Samplers use the randomness contract of :mod:`pydecode.ops.philox`: the token of row ``b``
  is the lowest index of the maximum over the candidates ``v`` of
  ``filtered[b, v] + gumbel_from_uniform(philox_uniform_at(seed[b], offset[b], v, STREAM_SAMPLE))``
  (float32 add). Candidates are the entries that are not -inf and not NaN (NaN counts as
  -inf); a row with no candidate returns token 0. Probability inputs are sampled as the
  logits ``log(probs)`` (a zero probability is -inf).
"""

from __future__ import annotations

import functools
from numbers import Real
from typing import Any, NamedTuple, Optional, Union

import torch

from . import _cpu
from ._library import call, define_op
from ._registry import register, resolve_name
from ._validate import RowParam, check_int, check_logits, env_count, env_switch, row_param, scan_values
from .philox import STREAM_SAMPLE, SeedLike, gumbel_from_uniform, philox_uniform_at, resolve_seed

__all__ = [
    "SampleOutput",
    "apply_temperature",
    "argmax",
    "filter_and_sample",
    "filter_and_sample_from_state",
    "greedy",
    "min_p_mask_logits",
    "min_p_sampling_from_probs",
    "sampling_from_logits",
    "sampling_from_probs",
    "top_k_mask_logits",
    "top_k_renorm_probs",
    "top_k_sampling_from_probs",
    "top_k_top_p_sampling_from_logits",
    "top_k_top_p_sampling_from_probs",
    "top_p_mask_logits",
    "top_p_renorm_probs",
    "top_p_sampling_from_probs",
]

_NEG_INF = float("-inf")
_Mask = Optional[torch.Tensor]


# --------------------------------------------------------------------------- reference
# The `_*_remove` helpers return the boolean mask of entries a stage filters out (None when
# no row is active), so the logit masks, the renormalised-probability ops and the fused
# samplers share one definition of each keep rule.
def _temperature(scores: torch.Tensor, temperature: torch.Tensor, reciprocal: Optional[bool] = None) -> torch.Tensor:
    """``scores / T`` as transformers computes it with ``T`` a Python float (``temperature``: float64
    rows, or float32 taken exactly). On CPU torch divides by ``float32(T)``; on CUDA it multiplies by
    the reciprocal taken in double and rounded to float32 (measured on an H200: for T = 1.1 this
    differs from ``1 / float32(T)`` by one ulp). ``reciprocal`` (default: the scores are on CUDA)
    picks the CUDA rule."""
    if reciprocal is None:
        reciprocal = scores.device.type == "cuda"
    if reciprocal:
        return scores * torch.reciprocal(temperature.to(torch.float64)).to(torch.float32)[:, None]
    return scores / temperature.to(torch.float32)[:, None]


def _top_k_remove(scores: torch.Tensor, top_k: torch.Tensor, min_tokens_to_keep: int) -> _Mask:
    vocab = scores.shape[-1]
    k = top_k.to(torch.int64).clamp(min=min_tokens_to_keep)
    # k >= vocab removes nothing (the k-th value is the row minimum), so such rows are skipped
    # rather than forcing a full-vocabulary topk.
    active = (top_k > 0) & (k < vocab)
    if not bool(active.any()):
        return None
    k = torch.where(active, k, 1)
    # The k-th entry of topk(kmax) equals the last entry of topk(k): topk's values are exact
    # copies in a fixed order (NaN ranks highest), so every row gets transformers' threshold.
    top_values = torch.topk(scores, int(k.max()), dim=-1).values
    kth = top_values.gather(-1, (k - 1)[:, None])
    return (scores < kth) & active[:, None]


def _top_p_remove(scores: torch.Tensor, top_p: torch.Tensor, min_tokens_to_keep: int) -> _Mask:
    active = top_p < 1
    if not bool(active.any()):
        return None
    sorted_scores, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    # transformers compares with the Python float `1 - top_p`, which torch rounds to float32.
    threshold = (1 - top_p.to(torch.float64)).to(torch.float32)
    sorted_remove = cumulative <= threshold[:, None]
    sorted_remove[..., -min_tokens_to_keep:] = False
    remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
    return remove & active[:, None]


def _min_p_remove(scores: torch.Tensor, min_p: torch.Tensor, min_tokens_to_keep: int) -> _Mask:
    active = min_p > 0
    if not bool(active.any()):
        return None
    probs = torch.softmax(scores, dim=-1)
    top_probs = probs.amax(dim=-1, keepdim=True)
    # float32(min_p) * p_max: what torch computes for transformers' Python float * tensor.
    remove = probs < min_p.to(torch.float32)[:, None] * top_probs
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, keep, False)
    return remove & active[:, None]


def _masked(scores: torch.Tensor, remove: Optional[torch.Tensor], filter_value: float) -> torch.Tensor:
    return scores if remove is None else scores.masked_fill(remove, filter_value)


def _filter_chain(
    scores: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    min_tokens_to_keep: int,
) -> torch.Tensor:
    """transformers' warper order Temperature -> TopK -> TopP -> MinP, each on the previous output."""
    if bool((temperature != 1).any()):
        scores = _temperature(scores, temperature)
    scores = _masked(scores, _top_k_remove(scores, top_k, min_tokens_to_keep), _NEG_INF)
    scores = _masked(scores, _top_p_remove(scores, top_p, min_tokens_to_keep), _NEG_INF)
    return _masked(scores, _min_p_remove(scores, min_p, min_tokens_to_keep), _NEG_INF)


def _gumbel_argmax(scores: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """The contract's token per row; noise is drawn only for candidates (sparse after top-k)."""
    rows, cols = torch.nonzero(scores > _NEG_INF, as_tuple=True)  # NaN > -inf is False
    noise = gumbel_from_uniform(philox_uniform_at(seed[rows], offset[rows], cols, STREAM_SAMPLE))
    noisy = torch.full_like(scores, _NEG_INF)
    noisy[rows, cols] = scores[rows, cols] + noise
    # argmax returns the first maximum, and 0 on a row that is all -inf (no candidate).
    return noisy.argmax(dim=-1)


def _chosen_logprobs(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    clean = scores.masked_fill(torch.isnan(scores), _NEG_INF)
    logprobs = torch.log_softmax(clean, dim=-1).gather(-1, tokens[:, None])[:, 0]
    has_candidate = (clean > _NEG_INF).any(dim=-1)
    return torch.where(has_candidate, logprobs, _NEG_INF)


def _f32(x: torch.Tensor) -> torch.Tensor:
    # Row sums over a strided row round differently from a contiguous one (seen with
    # x[:, ::2].sum(-1)); a contiguous float32 copy makes every result independent of strides.
    return x.float().contiguous()


def _new(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    # torch.library forbids returning an input; a float32 input with every row disabled
    # would otherwise come back as the same object.
    return result.clone() if result is source else result


@register("apply_temperature", "torch")
def apply_temperature_torch(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``logits / temperature[:, None]`` in float32 (TemperatureLogitsWarper)."""
    return _temperature(_f32(logits), temperature)


@register("top_k_mask_logits", "torch")
def top_k_mask_logits_torch(
    logits: torch.Tensor, top_k: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    """float32 logits with entries below each row's k-th value set to ``filter_value`` (TopKLogitsWarper)."""
    scores = _f32(logits)
    return _new(_masked(scores, _top_k_remove(scores, top_k, min_tokens_to_keep), filter_value), logits)


@register("top_p_mask_logits", "torch")
def top_p_mask_logits_torch(
    logits: torch.Tensor, top_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    """float32 logits outside each row's nucleus set to ``filter_value`` (TopPLogitsWarper)."""
    scores = _f32(logits)
    return _new(_masked(scores, _top_p_remove(scores, top_p, min_tokens_to_keep), filter_value), logits)


@register("min_p_mask_logits", "torch")
def min_p_mask_logits_torch(
    logits: torch.Tensor, min_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    """float32 logits with probability below ``min_p * p_max`` set to ``filter_value`` (MinPLogitsWarper)."""
    scores = _f32(logits)
    return _new(_masked(scores, _min_p_remove(scores, min_p, min_tokens_to_keep), filter_value), logits)


def _renormalised(probs: torch.Tensor, remove: Optional[torch.Tensor]) -> torch.Tensor:
    kept = probs if remove is None else probs.masked_fill(remove, 0.0)
    total = kept.sum(dim=-1, keepdim=True)
    return torch.where(total == 0, 0.0, kept / total)


@register("top_k_renorm_probs", "torch")
def top_k_renorm_probs_torch(probs: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """float32 probs kept by the top-k rule on ``log(probs)``, divided by their row sum."""
    p = _f32(probs)
    return _renormalised(p, _top_k_remove(torch.log(p), top_k, 1))


@register("top_p_renorm_probs", "torch")
def top_p_renorm_probs_torch(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """float32 probs kept by the top-p rule on ``log(probs)``, divided by their row sum."""
    p = _f32(probs)
    return _renormalised(p, _top_p_remove(torch.log(p), top_p, 1))


@register("greedy", "torch")
def greedy_torch(logits: torch.Tensor) -> torch.Tensor:
    """int64 ``(batch,)``: lowest index of each row's maximum, NaN ignored, 0 when nothing is > -inf."""
    scores = _f32(logits)
    return scores.masked_fill(torch.isnan(scores), _NEG_INF).argmax(dim=-1)


@register("argmax", "torch")
def argmax_torch(logits: torch.Tensor) -> torch.Tensor:
    """int64 ``(batch,)``: ``torch.argmax(logits, dim=-1)`` (first maximum; the first NaN wins)."""
    return torch.argmax(logits, dim=-1)


@register("filter_and_sample", "torch")
def filter_and_sample_torch(
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
    """(tokens int64 (B,), logprobs float32 (B,) or (0,), filtered float32 (B, V) or (0,))."""
    scores = _filter_chain(_f32(logits), temperature, top_k, top_p, min_p, min_tokens_to_keep)
    tokens = _gumbel_argmax(scores, seed, offset)
    # Two distinct empties: outputs of one op must not alias each other either.
    logprobs = _chosen_logprobs(scores, tokens) if return_logprobs else scores.new_empty((0,))
    filtered = _new(scores, logits) if return_filtered else scores.new_empty((0,))
    return tokens, logprobs, filtered


@register("sampling_from_probs", "torch")
def sampling_from_probs_torch(
    probs: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
) -> torch.Tensor:
    """int64 (B,): the contract's token for the logits ``log(probs)`` after TopK -> TopP -> MinP."""
    scores = torch.log(_f32(probs))
    no_temperature = torch.ones_like(top_p)
    scores = _filter_chain(scores, no_temperature, top_k, top_p, min_p, 1)
    return _gumbel_argmax(scores, seed, offset)


# --------------------------------------------------------------------------- cpu backend
# csrc/cpu/sampling.cpp: one filter-chain kernel (temperature or log -> top-k -> top-p -> min-p)
# writes whichever of tokens / logprobs / filtered rows / renormalised probabilities a launcher
# asks for, in one read of each row where top-k leaves few candidates. csrc/cuda/sampling.cu has
# the same chain with the same arguments, so the chain-based launchers below serve both backends.
_TRANSFORM_NONE, _TRANSFORM_DIVIDE, _TRANSFORM_LOG = 0, 1, 2


@functools.cache
def _softmax_lanes() -> int:
    """SIMD width of torch's float32 reductions here: the kernel sums softmax denominators in
    that lane order, so its probabilities are bit-equal to torch.softmax's (16 on AVX512, 8 on AVX2)."""
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def _addr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def _chain(
    logits: torch.Tensor,
    *,
    transform: int = _TRANSFORM_NONE,
    temperature: Optional[torch.Tensor] = None,
    top_k: Optional[torch.Tensor] = None,
    top_p: Optional[torch.Tensor] = None,
    min_p: Optional[torch.Tensor] = None,
    min_tokens_to_keep: int = 1,
    seed: Optional[torch.Tensor] = None,
    offset: Optional[torch.Tensor] = None,
    tokens: bool = False,
    logprobs: bool = False,
    filtered: bool = False,
    filter_value: float = _NEG_INF,
    renorm: bool = False,
    state: Optional[tuple[list, list]] = None,
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The filter chain kernel of the cpu backend (csrc/cpu/sampling.cpp) or, for CUDA tensors, of
    the cuda backend (csrc/cuda/sampling.cu): (tokens int64 (B,), logprobs float32 (B,),
    filtered-or-renormalised float32 (B, V)), None where not asked; every tensor on ``logits.device``.
    ``state`` (cpu only): a PenaltyState's contiguous (tokens, in_rep, counts, lengths) and the
    float32 (repetition, presence, frequency) penalties (None = off), applied as the rows are read."""
    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    dev = x.device
    f64 = torch.float64
    temperature = None if temperature is None else _cpu.contiguous(temperature, f64)
    top_k = None if top_k is None else _cpu.contiguous(top_k, torch.int64)
    top_p = None if top_p is None else _cpu.contiguous(top_p, f64)
    min_p = None if min_p is None else _cpu.contiguous(min_p, f64)
    seed = None if seed is None else _cpu.contiguous(seed, torch.int64)
    offset = None if offset is None else _cpu.contiguous(offset, torch.int64)
    tok = torch.empty(batch, dtype=torch.int64, device=dev) if tokens else None
    lp = torch.empty(batch, dtype=torch.float32, device=dev) if logprobs else None
    rows = torch.empty((batch, vocab), dtype=torch.float32, device=dev) if (filtered or renorm) else None
    head = (x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), transform, _addr(temperature),
            _addr(top_k), _addr(top_p), _addr(min_p), min_tokens_to_keep)
    tail = (_addr(seed), _addr(offset), _addr(tok), _addr(lp), _addr(rows) if filtered else 0, filter_value,
            _addr(rows) if renorm else 0)
    if dev.type == "cuda":
        assert state is None, "the cuda chain has no fused penalties"
        _chain_cuda(x, head, tail)
    elif state is None:
        _cpu.module().filter_chain(*head, _softmax_lanes(), *tail)
    else:
        (tokens_t, in_rep, counts, lengths), penalties = state
        _cpu.module().filter_chain(*head, _softmax_lanes(), *tail, tokens_t.data_ptr(), in_rep.data_ptr(),
                                   counts.data_ptr(), lengths.data_ptr(), tokens_t.shape[1],
                                   *(_addr(t) for t in penalties))
    return tok, lp, rows


@register("apply_temperature", "cpu")
def _apply_temperature_cpu(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    t = _cpu.contiguous(temperature, torch.float64)
    out = torch.empty((batch, vocab), dtype=torch.float32)
    _cpu.module().apply_temperature(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), t.data_ptr(), out.data_ptr()
    )
    return out


@register("top_k_mask_logits", "cpu")
@register("top_k_mask_logits", "cuda")
def _top_k_mask_logits_chain(
    logits: torch.Tensor, top_k: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    return _chain(
        logits, top_k=top_k, min_tokens_to_keep=min_tokens_to_keep, filtered=True, filter_value=filter_value
    )[2]


@register("top_p_mask_logits", "cpu")
@register("top_p_mask_logits", "cuda")
def _top_p_mask_logits_chain(
    logits: torch.Tensor, top_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    return _chain(
        logits, top_p=top_p, min_tokens_to_keep=min_tokens_to_keep, filtered=True, filter_value=filter_value
    )[2]


@register("min_p_mask_logits", "cpu")
@register("min_p_mask_logits", "cuda")
def _min_p_mask_logits_chain(
    logits: torch.Tensor, min_p: torch.Tensor, filter_value: float, min_tokens_to_keep: int
) -> torch.Tensor:
    return _chain(
        logits, min_p=min_p, min_tokens_to_keep=min_tokens_to_keep, filtered=True, filter_value=filter_value
    )[2]


def _renormalised_cpu(kept: Optional[torch.Tensor]) -> torch.Tensor:
    # The kernel selects and writes the kept probabilities (0 elsewhere); the row sum and the
    # division are torch's own, so they round exactly as the reference's (_renormalised).
    assert kept is not None
    total = kept.sum(dim=-1, keepdim=True)
    return torch.where(total == 0, 0.0, kept / total)


@register("top_k_renorm_probs", "cpu")
@register("top_k_renorm_probs", "cuda")
def _top_k_renorm_probs_chain(probs: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    return _renormalised_cpu(_chain(probs, transform=_TRANSFORM_LOG, top_k=top_k, renorm=True)[2])


@register("top_p_renorm_probs", "cpu")
@register("top_p_renorm_probs", "cuda")
def _top_p_renorm_probs_chain(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    return _renormalised_cpu(_chain(probs, transform=_TRANSFORM_LOG, top_p=top_p, renorm=True)[2])


def _greedy_kernel(logits: torch.Tensor, nan_is_max: bool) -> torch.Tensor:
    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    out = torch.empty(batch, dtype=torch.int64)
    _cpu.module().greedy(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), out.data_ptr(), nan_is_max
    )
    return out


@register("greedy", "cpu")
def _greedy_cpu(logits: torch.Tensor) -> torch.Tensor:
    return _greedy_kernel(logits, nan_is_max=False)


@register("argmax", "cpu")
def _argmax_cpu(logits: torch.Tensor) -> torch.Tensor:
    return _greedy_kernel(logits, nan_is_max=True)


@register("filter_and_sample", "cpu")
@register("filter_and_sample", "cuda")
def _filter_and_sample_chain(
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
        logits, transform=_TRANSFORM_DIVIDE, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        min_tokens_to_keep=min_tokens_to_keep, seed=seed, offset=offset, tokens=True, logprobs=return_logprobs,
        filtered=return_filtered,
    )
    assert tokens is not None
    empty = functools.partial(torch.empty, 0, dtype=torch.float32, device=logits.device)
    return tokens, logprobs if logprobs is not None else empty(), filtered if filtered is not None else empty()


@register("sampling_from_probs", "cpu")
@register("sampling_from_probs", "cuda")
def _sampling_from_probs_chain(
    probs: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
) -> torch.Tensor:
    tokens = _chain(
        probs, transform=_TRANSFORM_LOG, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, offset=offset, tokens=True
    )[0]
    assert tokens is not None
    return tokens


def _same_float32(logits: torch.Tensor, *_: object) -> torch.Tensor:
    return torch.empty_like(logits, dtype=torch.float32)


def _fake_tokens(logits: torch.Tensor, *_: object) -> torch.Tensor:
    return logits.new_empty((logits.shape[0],), dtype=torch.int64)


def _fake_filter_and_sample(
    logits: torch.Tensor, *args: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return_logprobs, return_filtered = args[-2], args[-1]
    batch, vocab = logits.shape
    return (
        logits.new_empty((batch,), dtype=torch.int64),
        logits.new_empty((batch,) if return_logprobs else (0,), dtype=torch.float32),
        logits.new_empty((batch, vocab) if return_filtered else (0,), dtype=torch.float32),
    )


define_op("apply_temperature", "(Tensor logits, Tensor temperature) -> Tensor", _same_float32)
define_op(
    "top_k_mask_logits",
    "(Tensor logits, Tensor top_k, float filter_value, int min_tokens_to_keep) -> Tensor",
    _same_float32,
)
define_op(
    "top_p_mask_logits",
    "(Tensor logits, Tensor top_p, float filter_value, int min_tokens_to_keep) -> Tensor",
    _same_float32,
)
define_op(
    "min_p_mask_logits",
    "(Tensor logits, Tensor min_p, float filter_value, int min_tokens_to_keep) -> Tensor",
    _same_float32,
)
define_op("top_k_renorm_probs", "(Tensor probs, Tensor top_k) -> Tensor", _same_float32)
define_op("top_p_renorm_probs", "(Tensor probs, Tensor top_p) -> Tensor", _same_float32)
define_op("greedy", "(Tensor logits) -> Tensor", _fake_tokens)
define_op("argmax", "(Tensor logits) -> Tensor", _fake_tokens)
define_op(
    "filter_and_sample",
    "(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p, Tensor min_p, int min_tokens_to_keep, "
    "Tensor seed, Tensor offset, bool return_logprobs, bool return_filtered) -> (Tensor, Tensor, Tensor)",
    _fake_filter_and_sample,
)
define_op(
    "sampling_from_probs",
    "(Tensor probs, Tensor top_k, Tensor top_p, Tensor min_p, Tensor seed, Tensor offset) -> Tensor",
    _fake_tokens,
)


# --------------------------------------------------------------------------- public API
class SampleOutput(NamedTuple):
    """Result of :func:`filter_and_sample`.

    ``tokens``: int64 ``(batch,)``. ``logprobs``: float32 ``(batch,)``, the log-softmax of the
    filtered row at the chosen token (when requested). ``filtered``: float32 ``(batch, vocab)``,
    the logits after temperature and filtering (when requested).
    """

    tokens: torch.Tensor
    logprobs: Optional[torch.Tensor] = None
    filtered: Optional[torch.Tensor] = None


def _check_scores(logits: torch.Tensor, name: str) -> torch.Tensor:
    check_logits(logits, name)
    if logits.shape[1] == 0:
        raise ValueError(f"{name} must have at least 1 vocabulary entry, got shape {tuple(logits.shape)}")
    return logits


def _temperature_rows(temperature: RowParam, logits: torch.Tensor, scan: bool = True) -> torch.Tensor:
    try:
        batch, device = logits.shape[0], logits.device
        return row_param(
            temperature, "temperature", batch, device, dtype=torch.float64, low=0, low_open=True, values=scan
        )
    except ValueError as exc:
        if "must be in" not in str(exc):
            raise
        raise ValueError(f"{exc}; use greedy decoding (do_sample=False) for temperature 0") from None


def _top_k_rows(top_k: RowParam, logits: torch.Tensor, scan: bool = True) -> torch.Tensor:
    # [0, vocab]: a k past the vocabulary is a caller's mistake at the op level (the HF-named
    # processor classes clamp k to the vocabulary first, as transformers does).
    batch, vocab = logits.shape
    return row_param(top_k, "top_k", batch, logits.device, dtype=torch.int64, low=0, high=vocab, values=scan)


def _unit_rows(value: RowParam, name: str, logits: torch.Tensor, scan: bool = True) -> torch.Tensor:
    return row_param(value, name, logits.shape[0], logits.device, dtype=torch.float64, low=0, high=1, values=scan)


def _check_filter_value(filter_value: float) -> float:
    if isinstance(filter_value, bool) or not isinstance(filter_value, Real):
        raise TypeError(f"filter_value must be a float, got {type(filter_value).__name__}")
    return float(filter_value)


def apply_temperature(
    logits: torch.Tensor, temperature: Union[float, torch.Tensor], *, backend: Optional[str] = None
) -> torch.Tensor:
    """Divide each row of ``logits`` by its temperature, like ``TemperatureLogitsWarper``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        temperature: a float or ``(batch,)`` tensor, every value in (0, inf]; 1 leaves a row
            unchanged. Temperature 0 is not a temperature: use greedy decoding.

    Returns:
        float32 ``(batch, vocab)``; NaN and -inf entries stay NaN and -inf.
    """
    _check_scores(logits, "logits")
    scan = scan_values("apply_temperature", logits.device, backend)
    return call("apply_temperature", backend, logits, _temperature_rows(temperature, logits, scan))


def top_k_mask_logits(
    logits: torch.Tensor,
    top_k: Union[int, torch.Tensor],
    *,
    filter_value: float = _NEG_INF,
    min_tokens_to_keep: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Set every entry below the row's k-th largest value to ``filter_value`` (``TopKLogitsWarper``).

    All ties with the k-th value are kept; the effective k is
    ``min(max(top_k, min_tokens_to_keep), vocab)``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        top_k: an int or ``(batch,)`` int tensor, every value in [0, vocab]; 0 disables the row.
        filter_value: the value written at removed entries.
        min_tokens_to_keep: int >= 1.

    Returns:
        float32 ``(batch, vocab)``. As in transformers, NaN ranks above every value when the
        k-th value is chosen and is never removed (a row with k or more NaNs is unchanged);
        an all -inf row is unchanged.
    """
    _check_scores(logits, "logits")
    filter_value = _check_filter_value(filter_value)
    min_tokens_to_keep = check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)
    top_k = _top_k_rows(top_k, logits, scan_values("top_k_mask_logits", logits.device, backend))
    return call("top_k_mask_logits", backend, logits, top_k, filter_value, min_tokens_to_keep)


def top_p_mask_logits(
    logits: torch.Tensor,
    top_p: Union[float, torch.Tensor],
    *,
    filter_value: float = _NEG_INF,
    min_tokens_to_keep: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Nucleus filtering exactly as ``TopPLogitsWarper``.

    Sorted ascending, a token is removed when the float32 cumulative softmax up to and
    including it is <= ``1 - top_p``; the ``min_tokens_to_keep`` largest are always kept. So
    the token that crosses the threshold is kept, and ties are ordered by ``torch.sort``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        top_p: a float or ``(batch,)`` tensor in [0, 1]; 1 disables the row (as ``generate``,
            which leaves the warper out for 1.0); 0 keeps ``min_tokens_to_keep`` tokens.
        filter_value: the value written at removed entries.
        min_tokens_to_keep: int >= 1.

    Returns:
        float32 ``(batch, vocab)``. A row containing NaN, or all -inf, has a NaN softmax and is
        returned unchanged.
    """
    _check_scores(logits, "logits")
    filter_value = _check_filter_value(filter_value)
    min_tokens_to_keep = check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)
    top_p = _unit_rows(top_p, "top_p", logits, scan_values("top_p_mask_logits", logits.device, backend))
    return call("top_p_mask_logits", backend, logits, top_p, filter_value, min_tokens_to_keep)


def min_p_mask_logits(
    logits: torch.Tensor,
    min_p: Union[float, torch.Tensor],
    *,
    filter_value: float = _NEG_INF,
    min_tokens_to_keep: int = 1,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Remove tokens whose probability is below ``min_p`` times the row's top probability
    (``MinPLogitsWarper``); the ``min_tokens_to_keep`` most probable are always kept.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        min_p: a float or ``(batch,)`` tensor in [0, 1]; 0 disables the row.
        filter_value: the value written at removed entries.
        min_tokens_to_keep: int >= 1.

    Returns:
        float32 ``(batch, vocab)``. A row containing NaN, or all -inf, is returned unchanged.
    """
    _check_scores(logits, "logits")
    filter_value = _check_filter_value(filter_value)
    min_tokens_to_keep = check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)
    min_p = _unit_rows(min_p, "min_p", logits, scan_values("min_p_mask_logits", logits.device, backend))
    return call("min_p_mask_logits", backend, logits, min_p, filter_value, min_tokens_to_keep)


def top_k_renorm_probs(
    probs: torch.Tensor, top_k: Union[int, torch.Tensor], *, backend: Optional[str] = None
) -> torch.Tensor:
    """Keep each row's top-k probabilities and renormalise them to sum 1 (FlashInfer's name).

    The kept set is the one :func:`top_k_mask_logits` keeps on ``log(probs)`` with
    ``min_tokens_to_keep=1``: every probability >= the k-th largest (ties kept). Removed
    entries become 0; kept ones are divided by the kept sum.

    Args:
        probs: ``(batch, vocab)`` float32/float16/bfloat16, entries >= 0 (need not sum to 1).
        top_k: an int or ``(batch,)`` int tensor, every value in [0, vocab]; 0 only renormalises the row.

    Returns:
        float32 ``(batch, vocab)``. A row whose kept sum is 0 comes back all zeros; a row
        containing NaN comes back all NaN.
    """
    _check_scores(probs, "probs")
    scan = scan_values("top_k_renorm_probs", probs.device, backend)
    return call("top_k_renorm_probs", backend, probs, _top_k_rows(top_k, probs, scan))


def top_p_renorm_probs(
    probs: torch.Tensor, top_p: Union[float, torch.Tensor], *, backend: Optional[str] = None
) -> torch.Tensor:
    """Keep each row's nucleus and renormalise it to sum 1 (FlashInfer's name).

    The kept set is the one :func:`top_p_mask_logits` keeps on ``log(probs)`` with
    ``min_tokens_to_keep=1`` (transformers' top-p rule, so the crossing token is kept).

    Args:
        probs: ``(batch, vocab)`` float32/float16/bfloat16, entries >= 0 (need not sum to 1).
        top_p: a float or ``(batch,)`` tensor in [0, 1]; 1 only renormalises the row.

    Returns:
        float32 ``(batch, vocab)``. A row whose kept sum is 0 comes back all zeros; a row
        containing NaN comes back all NaN.
    """
    _check_scores(probs, "probs")
    scan = scan_values("top_p_renorm_probs", probs.device, backend)
    return call("top_p_renorm_probs", backend, probs, _unit_rows(top_p, "top_p", probs, scan))


def greedy(logits: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Argmax per row: int64 ``(batch,)``, the lowest index of the maximum (``torch.argmax``).

    NaN entries are ignored; a row with nothing above -inf (all -inf or NaN) gives token 0.
    ``logits``: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
    """
    _check_scores(logits, "logits")
    return call("greedy", backend, logits)


def argmax(logits: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """``torch.argmax(logits, dim=-1)``, the choice transformers' greedy search makes: int64
    ``(batch,)``, the lowest index of each row's maximum, where NaN counts as the maximum (the
    first NaN wins) and a row of -inf gives 0. Unlike :func:`greedy`, which skips NaN.

    ``logits``: ``(batch, vocab)`` float32/float16/bfloat16, any strides. Backends: cpu (one
    vectorised read per row, ~3x ``torch.argmax`` on CPU) and torch.
    """
    _check_scores(logits, "logits")
    return call("argmax", backend, logits)


def _filter_rows(
    logits: torch.Tensor, temperature: RowParam, top_k: RowParam, top_p: RowParam, min_p: RowParam,
    backend: Optional[str],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """filter_and_sample's per-row parameters, checked, with None as the stage's "off" value."""
    scan = scan_values("filter_and_sample", logits.device, backend)
    return (
        _temperature_rows(1.0 if temperature is None else temperature, logits, scan),
        _top_k_rows(0 if top_k is None else top_k, logits, scan),
        _unit_rows(1.0 if top_p is None else top_p, "top_p", logits, scan),
        _unit_rows(0.0 if min_p is None else min_p, "min_p", logits, scan),
    )


def filter_and_sample(
    logits: torch.Tensor,
    *,
    temperature: RowParam = None,
    top_k: RowParam = None,
    top_p: RowParam = None,
    min_p: RowParam = None,
    min_tokens_to_keep: int = 1,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    return_logprobs: bool = False,
    return_filtered: bool = False,
    backend: Optional[str] = None,
) -> SampleOutput:
    """Temperature -> top-k -> top-p -> min-p, then one sampled token per row: the fused op.

    ``filtered`` is exactly what transformers' warpers ``TemperatureLogitsWarper``,
    ``TopKLogitsWarper``, ``TopPLogitsWarper``, ``MinPLogitsWarper`` (the ones whose argument
    is not None, in that order, each with ``min_tokens_to_keep``) output on ``logits.float()``.
    The token follows the module's randomness contract: argmax of ``filtered`` plus the Philox
    Gumbel noise of ``(seed, offset, token)`` over the entries that are not -inf/NaN.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        temperature: None, or a float / ``(batch,)`` tensor in (0, inf] (1 = unchanged row).
        top_k: None, or an int / ``(batch,)`` int tensor in [0, vocab] (0 = disabled row).
        top_p: None, or a float / ``(batch,)`` tensor in [0, 1] (1 = disabled row).
        min_p: None, or a float / ``(batch,)`` tensor in [0, 1] (0 = disabled row).
        min_tokens_to_keep: int >= 1, for every filter (transformers' ``min_tokens_to_keep``).
        seed: an int, a ``(batch,)`` int64 tensor, or None to draw one seed from ``generator``
            (or torch's global generator).
        offset: an int or ``(batch,)`` int64 tensor: the request's position in its stream.
        generator: a ``torch.Generator`` for the seed; not together with ``seed``.
        return_logprobs: also return float32 ``(batch,)`` log-softmax of the filtered row at
            the chosen token (NaN entries counted as -inf).
        return_filtered: also return the float32 ``(batch, vocab)`` filtered logits.

    Returns:
        :class:`SampleOutput` ``(tokens, logprobs, filtered)``, int64 tokens. A row with no
        entry above -inf after filtering (all -inf or NaN) returns token 0 with logprob -inf.
    """
    _check_scores(logits, "logits")
    min_tokens_to_keep = check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)
    rows = _filter_rows(logits, temperature, top_k, top_p, min_p, backend)
    seeds, offsets = resolve_seed(seed, offset, logits.shape[0], logits.device, generator)
    tokens, logprobs, filtered = call(
        "filter_and_sample", backend, logits, *rows, min_tokens_to_keep, seeds, offsets,
        bool(return_logprobs), bool(return_filtered),
    )
    return SampleOutput(tokens, logprobs if return_logprobs else None, filtered if return_filtered else None)


def filter_and_sample_from_state(
    logits: torch.Tensor,
    state: Any,
    *,
    repetition_penalty: RowParam = None,
    presence_penalty: RowParam = None,
    frequency_penalty: RowParam = None,
    temperature: RowParam = None,
    top_k: RowParam = None,
    top_p: RowParam = None,
    min_p: RowParam = None,
    min_tokens_to_keep: int = 1,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    return_logprobs: bool = False,
    return_filtered: bool = False,
    backend: Optional[str] = None,
) -> SampleOutput:
    """Penalties from a :class:`~pydecode.ops.PenaltyState`, then :func:`filter_and_sample`: the
    same outputs, bit for bit, as ``filter_and_sample(apply_penalties_from_state(logits, state,
    ...), ...)`` with the same arguments.

    On the cpu backend this is one pass: the penalised entries (O(distinct tokens) per row) are
    patched into each row as the filter chain reads it, so no penalised float32 copy of the
    logits is written and read back (at batch 32 x 128256 that copy is about as long as the rest
    of the chain with top-k). Other backends run the two ops. Arguments: as
    :func:`apply_penalties_from_state` (``logits``, ``state``, the three penalties; None = off) and
    :func:`filter_and_sample` (the rest).
    """
    from .penalties import penalty_state_args

    _check_scores(logits, "logits")
    fused = not torch.compiler.is_compiling() and resolve_name("filter_and_sample", logits.device, backend) == "cpu"
    if not fused:
        from .penalties import apply_penalties_from_state

        penalised = apply_penalties_from_state(
            logits, state, repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, backend=backend,
        )
        return filter_and_sample(
            penalised, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            min_tokens_to_keep=min_tokens_to_keep, seed=seed, offset=offset, generator=generator,
            return_logprobs=return_logprobs, return_filtered=return_filtered, backend=backend,
        )
    state_args = penalty_state_args(
        logits, state, repetition_penalty, presence_penalty, frequency_penalty, "filter_and_sample", backend
    )
    min_tokens_to_keep = check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)
    temperature_rows, top_k_rows, top_p_rows, min_p_rows = _filter_rows(logits, temperature, top_k, top_p, min_p,
                                                                        backend)
    seeds, offsets = resolve_seed(seed, offset, logits.shape[0], logits.device, generator)
    tokens, logprobs, filtered = _chain(
        logits, transform=_TRANSFORM_DIVIDE, temperature=temperature_rows, top_k=top_k_rows, top_p=top_p_rows,
        min_p=min_p_rows, min_tokens_to_keep=min_tokens_to_keep, seed=seeds, offset=offsets, tokens=True,
        logprobs=bool(return_logprobs), filtered=bool(return_filtered), state=state_args,
    )
    assert tokens is not None
    return SampleOutput(tokens, logprobs, filtered)


def sampling_from_logits(
    logits: torch.Tensor,
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample one token per row from ``softmax(logits)``: int64 ``(batch,)``.

    :func:`filter_and_sample` with no filter; see it for ``seed``/``offset``/``generator`` and
    for rows with nothing above -inf (token 0).
    """
    return filter_and_sample(logits, seed=seed, offset=offset, generator=generator, backend=backend).tokens


def top_k_top_p_sampling_from_logits(
    logits: torch.Tensor,
    top_k: Union[int, torch.Tensor],
    top_p: Union[float, torch.Tensor],
    *,
    temperature: RowParam = None,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample after (temperature,) top-k then top-p, transformers' order: int64 ``(batch,)``.

    :func:`filter_and_sample` with ``top_k`` and ``top_p``; top_k 0 / top_p 1 disable a row's filter.
    """
    return filter_and_sample(
        logits, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, offset=offset,
        generator=generator, backend=backend,
    ).tokens


def _sample_probs(
    probs: torch.Tensor,
    top_k: RowParam,
    top_p: RowParam,
    min_p: RowParam,
    seed: SeedLike,
    offset: SeedLike,
    generator: Optional[torch.Generator],
    backend: Optional[str],
) -> torch.Tensor:
    _check_scores(probs, "probs")
    scan = scan_values("sampling_from_probs", probs.device, backend)
    top_k = _top_k_rows(0 if top_k is None else top_k, probs, scan)
    top_p = _unit_rows(1.0 if top_p is None else top_p, "top_p", probs, scan)
    min_p = _unit_rows(0.0 if min_p is None else min_p, "min_p", probs, scan)
    seeds, offsets = resolve_seed(seed, offset, probs.shape[0], probs.device, generator)
    return call("sampling_from_probs", backend, probs, top_k, top_p, min_p, seeds, offsets)


def sampling_from_probs(
    probs: torch.Tensor,
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample one token per row from ``probs`` (no filter).

    ``probs``: ``(batch, vocab)`` float32/float16/bfloat16, entries >= 0 (need not sum to 1).
    The row is sampled as the logits ``log(probs)`` with the randomness contract of :func:`filter_and_sample`
    (``seed``/``offset``/``generator``). Returns int64 ``(batch,)``; a row with no positive kept
    probability (all zero or NaN) returns token 0.
    """
    return _sample_probs(probs, None, None, None, seed, offset, generator, backend)


def top_k_sampling_from_probs(
    probs: torch.Tensor,
    top_k: Union[int, torch.Tensor],
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample from each row's top-k probabilities (top_k in [0, vocab]; 0 disables the row).

    transformers' TopK rule (``min_tokens_to_keep=1``) on ``log(probs)``; inputs, randomness
    and result as in :func:`sampling_from_probs`.
    """
    return _sample_probs(probs, top_k, None, None, seed, offset, generator, backend)


def top_p_sampling_from_probs(
    probs: torch.Tensor,
    top_p: Union[float, torch.Tensor],
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample from each row's nucleus (top_p in [0, 1]; 1 disables the row).

    transformers' TopP rule (``min_tokens_to_keep=1``) on ``log(probs)``; inputs, randomness
    and result as in :func:`sampling_from_probs`.
    """
    return _sample_probs(probs, None, top_p, None, seed, offset, generator, backend)


def min_p_sampling_from_probs(
    probs: torch.Tensor,
    min_p: Union[float, torch.Tensor],
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample from the tokens with p >= min_p * p_max (min_p in [0, 1]; 0 disables the row).

    transformers' MinP rule (``min_tokens_to_keep=1``) on ``log(probs)``; inputs, randomness
    and result as in :func:`sampling_from_probs`.
    """
    return _sample_probs(probs, None, None, min_p, seed, offset, generator, backend)


def top_k_top_p_sampling_from_probs(
    probs: torch.Tensor,
    top_k: Union[int, torch.Tensor],
    top_p: Union[float, torch.Tensor],
    *,
    seed: SeedLike = None,
    offset: SeedLike = 0,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample after top-k then top-p, transformers' order (0 / 1 disable a row's filter).

    ``probs``: ``(batch, vocab)`` float32/float16/bfloat16, entries >= 0 (need not sum to 1).
    The row is sampled as the logits ``log(probs)`` after transformers' TopK -> TopP rule
    (``min_tokens_to_keep=1``), with the randomness contract of :func:`filter_and_sample`
    (``seed``/``offset``/``generator``). Returns int64 ``(batch,)``; a row with no positive kept
    probability (all zero or NaN) returns token 0.
    """
    return _sample_probs(probs, top_k, top_p, None, seed, offset, generator, backend)


# --------------------------------------------------------------------------- cuda backend
# csrc/cuda/sampling.cu: the same filter chain as the cpu backend (its launchers, registered for
# both backends, are in the cpu section), one thread block per row, on the current CUDA stream.
# Tokens follow the randomness contract (same seed, same tokens as the cpu and triton backends);
# top-p's boundary is computed in exact fixed point rather than with
# the reference's float32 cumsum (see the kernel's header).
def _cuda_stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


# Rows per block of the fused chain: small batches split each row's vocabulary over several blocks
# (the module's chain_splits picks how many for the device; same outputs as one block per row).
# PYDECODE_CUDA_CHAIN_SPLITS=n forces n blocks per row (tests; 1 turns the split path off).
_CHAIN_SPLITS_ENV = "PYDECODE_CUDA_CHAIN_SPLITS"


def _forced_chain_splits() -> int:
    """The forced blocks per row, 0 when not forced (the module's convention)."""
    return env_count(_CHAIN_SPLITS_ENV, "blocks per row") or 0


# PYDECODE_CUDA_CHAIN_COMPACT=0 turns off the chain's candidate-list path (csrc/cuda/sampling.cu:
# same outputs, every stage on the full row), for the GPU tests and benchmarks that compare the two.
_CHAIN_COMPACT_ENV = "PYDECODE_CUDA_CHAIN_COMPACT"


def _chain_compact() -> bool:
    return env_switch(_CHAIN_COMPACT_ENV)


def _chain_cuda(x: torch.Tensor, head: tuple, tail: tuple) -> None:
    """Launches the cuda filter chain on ``x`` (its unit-stride rows view) with _chain's arguments."""
    from . import _cuda_launch

    module = _cuda_launch.module()
    batch, vocab = x.shape
    with _cuda_launch.on_device(x.device):
        splits = module.chain_splits(batch, vocab, _forced_chain_splits())
        # Barrier counters and merge buffers of the split rows, zeroed on the stream (no host sync,
        # so the step stays CUDA-graph capturable).
        words = batch * module.CHAIN_SCRATCH_WORDS if splits > 1 else 0
        scratch = torch.zeros(words, dtype=torch.int64, device=x.device) if words else None
        module.filter_chain(*head, *tail, splits, _addr(scratch), words, _cuda_launch.stream(x.device),
                            _chain_compact(), _cuda_launch.key_bins(), _cuda_launch.top_k_scan(),
                            _cuda_launch.warp_finish())


@register("apply_temperature", "cuda")
def _apply_temperature_cuda(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    from .. import _ext

    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    if batch > 65535:  # the kernel's grid y dimension; torch's op is the same math
        return apply_temperature_torch(logits, temperature)
    t = _cpu.contiguous(temperature, torch.float64)
    out = torch.empty((batch, vocab), dtype=torch.float32, device=x.device)
    with torch.cuda.device(x.device):
        _ext.cuda_module().apply_temperature(
            x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), t.data_ptr(), out.data_ptr(),
            _cuda_stream(x),
        )
    return out


@register("greedy", "cuda")
def _greedy_cuda(logits: torch.Tensor) -> torch.Tensor:
    from .. import _ext

    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    module = _ext.cuda_module()
    out = torch.empty(batch, dtype=torch.int64, device=x.device)
    # Small batches split each row over several blocks (partial maxima in this scratch).
    scratch = torch.empty(batch * module.GREEDY_MAX_SPLITS if batch < 128 else 0, dtype=torch.int64, device=x.device)
    with torch.cuda.device(x.device):
        module.greedy(
            x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), out.data_ptr(),
            scratch.data_ptr() if scratch.numel() else 0, scratch.numel(), _cuda_stream(x),
        )
    return out
