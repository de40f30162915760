"""Beam search candidate selection: the top-k step of transformers' ``_beam_search``.

One beam-search step in transformers 5.x (``generation/utils.py``): ``log_softmax`` of the
float32 logits of every beam row, the logits processors, then ``+ running_beam_scores``, a view
as ``(batch, num_beams * vocab)`` and ``torch.topk`` with
``k = max(2, 1 + n_eos) * num_beams`` (``_get_top_k_continuations``); the flat index splits into
the source beam (``// vocab``) and the token (``% vocab``).

Ordering (the contract every backend follows): candidates are ranked by score, descending, with
ties broken by the LOWEST flat index ``beam * vocab + token``; ``-0.0`` ties with ``+0.0`` and
every NaN (either sign) ranks above ``+inf``, as in ``torch.topk``/``torch.sort``, so the
selected candidates are the ones transformers selects. ``torch.topk`` does not specify the
order of ties, so the reference ranks an order-preserving integer key of (score, -flat index):
the keys are unique, which makes the result independent of the top-k algorithm used.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch

from . import _cpu
from ._library import call, define_op
from ._registry import register
from ._validate import check_device, check_int, check_logits, env_count

__all__ = ["BeamTopK", "beam_candidates", "beam_topk"]

_LOW32 = 2**32
# Flat candidate indices are packed into the low 32 bits of the ranking key.
_MAX_FLAT = 2**32 - 1


class BeamTopK(NamedTuple):
    """Result of :func:`beam_topk`, each ``(batch, k)``."""

    scores: torch.Tensor  # float32, descending in the ranking order
    token_ids: torch.Tensor  # int64, flat % vocab
    beam_indices: torch.Tensor  # int64 in [0, num_beams), flat // vocab


# --------------------------------------------------------------------------- reference
def _score_key(scores: torch.Tensor) -> torch.Tensor:
    """Order-preserving int64 key (values in the int32 range) of float32 ``scores``.

    ``-0.0`` is folded onto ``+0.0`` (they compare equal) and every NaN onto the positive
    quiet NaN, whose bit pattern sorts above ``+inf``.
    """
    s = torch.where(scores == 0, torch.zeros_like(scores), scores)
    s = torch.where(torch.isnan(s), torch.full_like(s, float("nan")), s)
    bits = s.view(torch.int32).to(torch.int64)
    # Negative floats: larger magnitude must give a smaller key, so flip the 31 magnitude bits.
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _beam_step_scores(
    logits: torch.Tensor, beam_scores: torch.Tensor, apply_log_softmax: bool
) -> torch.Tensor:
    # transformers works on a contiguous float32 copy of the logits; log_softmax of a strided
    # tensor may take another code path, so make the layout the same to get the same bits.
    x = logits.to(torch.float32).contiguous()
    if apply_log_softmax:
        x = torch.nn.functional.log_softmax(x, dim=-1)
    return x + beam_scores.to(torch.float32)[:, None]


@register("beam_topk", "torch")
def beam_topk_torch(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, apply_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two-stage top-k: each beam row's top ``min(k, vocab)``, then a merge of the candidates.

    The scores of a beam row are ranked with the same key as the merged ``num_beams * vocab``
    row (flat index tie-break), so every member of the batch's top k is among its own beam row's
    top k and the result equals the single pass over ``num_beams * vocab``, ties included. The
    beam score is added before ranking: float rounding can merge two log-probs into one sum.
    """
    rows, vocab = logits.shape
    batch = rows // num_beams
    scores = _beam_step_scores(logits, beam_scores, apply_log_softmax)
    beam_of_row = torch.arange(rows, device=logits.device, dtype=torch.int64) % num_beams
    flat = beam_of_row[:, None] * vocab + torch.arange(vocab, device=logits.device, dtype=torch.int64)
    keys = _score_key(scores) * _LOW32 + (_MAX_FLAT - flat)

    row_k = min(k, vocab)
    row_keys, row_tokens = torch.topk(keys, row_k, dim=1)
    row_flat = beam_of_row[:, None] * vocab + row_tokens
    cand_keys = row_keys.reshape(batch, num_beams * row_k)
    cand_flat = row_flat.reshape(batch, num_beams * row_k)

    _, pos = torch.topk(cand_keys, k, dim=1)
    sel = cand_flat.gather(1, pos)
    top_scores = scores.reshape(batch, num_beams * vocab).gather(1, sel)
    return top_scores, sel % vocab, sel // vocab


# --------------------------------------------------------------------------- cpu backend
@functools.cache
def _lse_mode() -> int:
    """Which of torch's CPU log_softmax kernels the C++ kernel reproduces (csrc/cpu/beam.h, LseMode).

    torch picks its kernel from the CPU capability it runs with (``ATEN_CPU_CAPABILITY``), fixed
    for the process: 16 SIMD lanes with SLEEF's exp/log on AVX512, 8 on AVX2, 8 lanes with libm
    on DEFAULT. Other capabilities (ARM, POWER) fall back to the AVX512 model: accurate, but the
    log-sum-exp constant may then differ from torch's in the last bit.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    return {"AVX512": 16, "AVX2": 8, "DEFAULT": 1}.get(capability, 16)


@register("beam_topk", "cpu")
def _beam_topk_cpu(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, apply_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _cpu.rows_view(logits)
    rows, vocab = x.shape
    batch = rows // num_beams
    beam_scores = _cpu.contiguous(beam_scores, torch.float32)
    scores = torch.empty((batch, k), dtype=torch.float32)
    token_ids = torch.empty((batch, k), dtype=torch.int64)
    beam_indices = torch.empty((batch, k), dtype=torch.int64)
    _cpu.module().beam_topk(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, _cpu.row_stride(x), beam_scores.data_ptr(),
        num_beams, k, apply_log_softmax, _lse_mode(), scores.data_ptr(), token_ids.data_ptr(),
        beam_indices.data_ptr(),
    )
    return scores, token_ids, beam_indices


def _beam_topk_fake(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, apply_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch = logits.shape[0] // num_beams
    return (
        logits.new_empty((batch, k), dtype=torch.float32),
        logits.new_empty((batch, k), dtype=torch.int64),
        logits.new_empty((batch, k), dtype=torch.int64),
    )


define_op(
    "beam_topk",
    "(Tensor logits, Tensor beam_scores, int num_beams, int k, bool apply_log_softmax)"
    " -> (Tensor, Tensor, Tensor)",
    _beam_topk_fake,
)


# --------------------------------------------------------------------------- public API
def beam_candidates(num_beams: int, n_eos: int = 0) -> int:
    """The ``k`` transformers' beam search keeps per step: ``max(2, 1 + n_eos) * num_beams``.

    ``n_eos`` is the number of EOS token ids (0 when there is none).
    """
    num_beams = check_int(num_beams, "num_beams", low=1)
    n_eos = check_int(n_eos, "n_eos", low=0)
    return max(2, 1 + n_eos) * num_beams


def beam_topk(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    num_beams: int,
    k: int,
    *,
    apply_log_softmax: bool = True,
    backend: Optional[str] = None,
) -> BeamTopK:
    """Top ``k`` continuations over all beams of each batch item (one beam-search step).

    Args:
        logits: ``(batch * num_beams, vocab)`` float32/float16/bfloat16, any strides, rows
            grouped by batch item (row ``b * num_beams + j`` is beam ``j`` of item ``b``), as
            transformers flattens them. Computed in float32.
        beam_scores: running beam scores, float32/float16/bfloat16, shape ``(batch * num_beams,)``
            or ``(batch, num_beams)``, on the logits' device; ``-inf`` marks a dead beam.
        num_beams: beams per batch item, >= 1.
        k: candidates kept per batch item, in ``[1, num_beams * vocab]``; transformers uses
            :func:`beam_candidates`.
        apply_log_softmax: take ``log_softmax`` of the logits first (transformers'
            ``_beam_search``); False when ``logits`` already are the processed log-probs.

    Returns:
        :class:`BeamTopK` of ``(batch, k)`` tensors: ``scores`` (float32, ``log_softmax(logits)
        + beam_scores`` of the candidate, bit-identical to transformers), ``token_ids`` (int64,
        ``flat % vocab``) and ``beam_indices`` (int64, ``flat // vocab``, the beam within the item).

    Order: scores descending; ties go to the lowest flat index ``beam * vocab + token``
    (deterministic on every backend, unlike ``torch.topk``); ``-0.0`` ties with ``+0.0``.

    Bad rows: a NaN score (NaN logits, or a row of all ``-inf`` logits, whose log-softmax is NaN)
    ranks above ``+inf``, as ``torch.topk`` ranks it in transformers, so such candidates come
    first with score NaN. A beam score of ``-inf`` makes the beam's finite candidates ``-inf``:
    they rank last and are chosen only when fewer than ``k`` better candidates exist.
    """
    check_logits(logits)
    num_beams = check_int(num_beams, "num_beams", low=1)
    rows, vocab = logits.shape
    if rows % num_beams:
        raise ValueError(
            f"logits must have batch * num_beams rows, got {rows} rows for num_beams={num_beams}"
        )
    batch = rows // num_beams
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= num_beams * vocab:
        raise ValueError(f"k must be in [1, num_beams * vocab] = [1, {num_beams * vocab}], got {k}")
    if num_beams * vocab > _MAX_FLAT:
        raise ValueError(f"num_beams * vocab must be < 2**32, got {num_beams * vocab}")
    if not isinstance(beam_scores, torch.Tensor):
        raise TypeError(f"beam_scores must be a torch.Tensor, got {type(beam_scores).__name__}")
    if not beam_scores.dtype.is_floating_point or beam_scores.dtype == torch.float64:
        raise TypeError(f"beam_scores must be float32, float16 or bfloat16, got {beam_scores.dtype}")
    if tuple(beam_scores.shape) not in ((rows,), (batch, num_beams)):
        raise ValueError(
            f"beam_scores must have shape ({rows},) or ({batch}, {num_beams}), got {tuple(beam_scores.shape)}"
        )
    check_device(beam_scores, "beam_scores", logits.device)
    if not isinstance(apply_log_softmax, bool):
        raise TypeError(f"apply_log_softmax must be a bool, got {type(apply_log_softmax).__name__}")
    beam_scores = beam_scores.reshape(rows).to(torch.float32)
    scores, token_ids, beam_indices = call(
        "beam_topk", backend, logits, beam_scores, num_beams, k, apply_log_softmax
    )
    return BeamTopK(scores, token_ids, beam_indices)


# --------------------------------------------------------------------------- cuda backend
# csrc/cuda/beam.cu: per beam row, log-softmax statistics and the row's top min(k, vocab) by
# radix select; per batch item, a shared-memory merge of the num_beams * min(k, vocab) ranks.
# Small batches split each row into slices (the module's beam_splits picks how many: one block
# per slice, then one per batch item; the same outputs as one block per row).
# PYDECODE_CUDA_BEAM_SPLITS=n forces n slices per row where the split path applies (tests and
# benchmarks; 1 turns it off). Larger merges (beyond the module's BEAM_MERGE_LIMIT candidates, far
# above transformers' 2 * num_beams per row) run the torch reference on the GPU instead.
BEAM_SPLITS_ENV = "PYDECODE_CUDA_BEAM_SPLITS"


def _forced_beam_splits() -> int:
    """The forced slices per row, 0 when not forced (the module's convention)."""
    return env_count(BEAM_SPLITS_ENV, "slices per row") or 0


@register("beam_topk", "cuda")
def _beam_topk_cuda(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, apply_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from . import _cuda_launch

    module = _cuda_launch.module()
    x = _cpu.rows_view(logits)
    rows, vocab = x.shape
    row_k = min(k, vocab)
    if num_beams * row_k > module.BEAM_MERGE_LIMIT:
        return beam_topk_torch(logits, beam_scores, num_beams, k, apply_log_softmax)
    batch = rows // num_beams
    dev = x.device
    beam_scores = _cpu.contiguous(beam_scores, torch.float32)
    splits = module.beam_splits(rows, vocab, num_beams, k, _forced_beam_splits())
    candidates = torch.empty(rows * row_k, dtype=torch.int64, device=dev)
    row_stats = torch.empty(rows * 2, dtype=torch.float32, device=dev)
    split_scratch = torch.empty(rows * splits * module.BEAM_SLICE_WORDS if splits > 1 else 0, dtype=torch.int64,
                                device=dev)
    scores = torch.empty((batch, k), dtype=torch.float32, device=dev)
    token_ids = torch.empty((batch, k), dtype=torch.int64, device=dev)
    beam_indices = torch.empty((batch, k), dtype=torch.int64, device=dev)
    with _cuda_launch.on_device(dev):
        module.beam_topk(
            x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, _cpu.row_stride(x), beam_scores.data_ptr(),
            num_beams, k, apply_log_softmax, candidates.data_ptr(), row_stats.data_ptr(), scores.data_ptr(),
            token_ids.data_ptr(), beam_indices.data_ptr(), _cuda_launch.stream(dev),
            _cuda_launch.key_bins(), splits, split_scratch.data_ptr() if splits > 1 else 0, split_scratch.numel(),
            _cuda_launch.top_k_scan(),
        )
    return scores, token_ids, beam_indices
