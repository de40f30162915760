"""N-gram and sequence constraints: no-repeat n-grams, encoder no-repeat n-grams, sequence
bias and bad words, with transformers' semantics.

Every op returns new float32 ``(batch, vocab)`` logits equal, bit for bit, to the matching
transformers processor applied to ``logits.float()``.

Sequence bias and bad words share one op, ``sequence_bias``, over a :class:`SequenceBiasTable`:
the biased sequences as padded tensors, built once (per generate call) instead of re-reading
a dict of tuples at every step. The public functions also accept transformers' dict/list
forms and build the table on the fly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import _cpu
from ._library import call, define_op
from ._registry import register
from ._validate import check_encoder_ids, check_index_tensor, check_int, check_logits, check_token_ids

__all__ = [
    "SequenceBiasTable",
    "bad_words_mask",
    "encoder_no_repeat_ngram_mask",
    "no_repeat_ngram_mask",
    "sequence_bias",
]

SequenceBiasLike = Union["SequenceBiasTable", Mapping, Sequence]
EosLike = Union[int, Sequence[int], torch.Tensor, None]

# Left padding of SequenceBiasTable.prefixes ("any token"), and of input_ids shorter than the
# longest prefix ("no token"): both negative, so neither equals a real id.
_PREFIX_PAD = -1
_INPUT_PAD = -2


# --------------------------------------------------------------------------- references
def _float32_copy(logits: torch.Tensor) -> torch.Tensor:
    return logits.to(torch.float32, copy=True)


def _ban(scores: torch.Tensor, matches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``-inf`` at ``candidates[b, w]`` wherever ``matches[b, w]``; ids >= vocab are ignored.

    Non-matches and ids past the vocabulary go to a spare column, so they cannot unban a
    matched token.
    """
    vocab = scores.shape[1]
    banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
    banned.scatter_(1, torch.where(matches, candidates.clamp(max=vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], -float("inf"))


@register("no_repeat_ngram_mask", "torch")
def no_repeat_ngram_mask_torch(
    logits: torch.Tensor, input_ids: torch.Tensor, ngram_size: int
) -> torch.Tensor:
    """Reference of :func:`no_repeat_ngram_mask`; returns float32 ``(batch, vocab)``."""
    scores = _float32_copy(logits)
    cur_len = input_ids.shape[1]
    if cur_len < ngram_size:
        return scores
    ids = input_ids.to(torch.int64)
    # Only windows whose first n-1 tokens equal the current suffix can be completed next.
    suffix = ids[:, cur_len + 1 - ngram_size :]
    windows = ids.unfold(1, ngram_size, 1)
    matches = (windows[..., :-1] == suffix[:, None, :]).all(dim=-1)
    return _ban(scores, matches, windows[..., -1])


@register("encoder_no_repeat_ngram_mask", "torch")
def encoder_no_repeat_ngram_mask_torch(
    logits: torch.Tensor, input_ids: torch.Tensor, encoder_input_ids: torch.Tensor, ngram_size: int
) -> torch.Tensor:
    """Reference of :func:`encoder_no_repeat_ngram_mask`: ``encoder_input_ids`` is 2-D with a
    number of rows dividing the batch. Returns float32 ``(batch, vocab)``."""
    scores = _float32_copy(logits)
    batch = scores.shape[0]
    cur_len = input_ids.shape[1]
    if cur_len < ngram_size - 1 or encoder_input_ids.shape[1] < ngram_size:
        return scores
    enc = encoder_input_ids.to(torch.int64)
    # Row b is hypothesis b of prompt b // num_beams.
    enc = enc.repeat_interleave(batch // enc.shape[0], dim=0)
    windows = enc.unfold(1, ngram_size, 1)
    suffix = input_ids[:, cur_len - (ngram_size - 1) :].to(torch.int64)
    matches = (windows[..., :-1] == suffix[:, None, :]).all(dim=-1)
    return _ban(scores, matches, windows[..., -1])


@register("sequence_bias", "torch")
def sequence_bias_torch(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    single_ids: torch.Tensor,
    single_biases: torch.Tensor,
    prefixes: torch.Tensor,
    last_tokens: torch.Tensor,
    biases: torch.Tensor,
) -> torch.Tensor:
    """Reference of :func:`sequence_bias` on a table's tensors (see :class:`SequenceBiasTable`).

    Same float32 additions in the same order as transformers: a zero bias, plus the
    single-token biases, plus each matched sequence's bias at its last token (table order,
    which is transformers' group order), then ``scores + bias``.
    """
    scores = logits.float()
    vocab = scores.shape[1]
    bias = torch.zeros(scores.shape, dtype=torch.float32, device=scores.device)
    length_1 = torch.zeros((vocab,), dtype=torch.float32, device=scores.device)
    length_1[single_ids] = single_biases
    bias += length_1
    if last_tokens.numel() > 0:
        width = prefixes.shape[1]
        if input_ids.shape[1] >= width:
            tail = input_ids[:, input_ids.shape[1] - width :]
        else:
            tail = F.pad(input_ids, (width - input_ids.shape[1], 0), value=_INPUT_PAD)
        # (batch, sequences): the last tokens equal the sequence's prefix.
        same = (tail[:, None, :] == prefixes[None, :, :]) | (prefixes[None, :, :] == _PREFIX_PAD)
        matching = same.all(dim=-1)
        # index_add_ adds in index order, like transformers' one index_add_ per group; an
        # unmatched sequence adds 0.0, which changes no value (bias can never be -0.0 here).
        bias.index_add_(1, last_tokens, torch.where(matching, biases, 0.0))
    return scores + bias


# --------------------------------------------------------------------------- cpu backend
def _id_rows(ids: torch.Tensor) -> tuple[torch.Tensor, tuple[int, bool, int, int]]:
    """``ids`` with unit stride along the row, and its (address, is_int64, length, row stride)."""
    ids = _cpu.rows_view(ids)
    return ids, (ids.data_ptr(), ids.dtype == torch.int64, ids.shape[1], _cpu.row_stride(ids))


def _logits_args(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int, int, int]]:
    """The unit-stride view of ``logits``, a new float32 output, and their kernel arguments."""
    x = _cpu.rows_view(logits)
    out = torch.empty(x.shape, dtype=torch.float32)
    return x, out, (x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], x.shape[0], x.shape[1], _cpu.row_stride(x), out.data_ptr())


@register("no_repeat_ngram_mask", "cpu")
def _no_repeat_ngram_mask_cpu(logits: torch.Tensor, input_ids: torch.Tensor, ngram_size: int) -> torch.Tensor:
    x, out, args = _logits_args(logits)
    ids, id_args = _id_rows(input_ids)
    _cpu.module().no_repeat_ngram_mask(*args, *id_args, ngram_size)
    return out


@register("encoder_no_repeat_ngram_mask", "cpu")
def _encoder_no_repeat_ngram_mask_cpu(
    logits: torch.Tensor, input_ids: torch.Tensor, encoder_input_ids: torch.Tensor, ngram_size: int
) -> torch.Tensor:
    x, out, args = _logits_args(logits)
    ids, id_args = _id_rows(input_ids)
    enc, (enc_ptr, enc64, enc_len, enc_stride) = _id_rows(encoder_input_ids)
    _cpu.module().encoder_no_repeat_ngram_mask(
        *args, *id_args, enc_ptr, enc64, enc.shape[0], enc_len, enc_stride, ngram_size
    )
    return out


@register("sequence_bias", "cpu")
def _sequence_bias_cpu(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    single_ids: torch.Tensor,
    single_biases: torch.Tensor,
    prefixes: torch.Tensor,
    last_tokens: torch.Tensor,
    biases: torch.Tensor,
) -> torch.Tensor:
    x, out, args = _logits_args(logits)
    ids, id_args = _id_rows(input_ids)
    if single_biases.shape != single_ids.shape or biases.shape != last_tokens.shape or prefixes.dim() != 2:
        raise ValueError("malformed sequence bias table: mismatched shapes")
    if prefixes.shape[0] != last_tokens.shape[0]:
        raise ValueError("malformed sequence bias table: prefixes and last_tokens differ in length")
    single_ids = _cpu.contiguous(single_ids, torch.int64)
    single_biases = _cpu.contiguous(single_biases, torch.float32)
    prefixes = _cpu.contiguous(prefixes, torch.int64)
    last_tokens = _cpu.contiguous(last_tokens, torch.int64)
    biases = _cpu.contiguous(biases, torch.float32)
    _cpu.module().sequence_bias(
        *args, *id_args, single_ids.data_ptr(), single_biases.data_ptr(), single_ids.numel(),
        prefixes.data_ptr(), prefixes.shape[1], last_tokens.data_ptr(), biases.data_ptr(), last_tokens.numel(),
    )
    return out


def _fake_logits(logits: torch.Tensor, *_: object) -> torch.Tensor:
    return logits.new_empty(logits.shape, dtype=torch.float32)


define_op("no_repeat_ngram_mask", "(Tensor logits, Tensor input_ids, int ngram_size) -> Tensor", _fake_logits)
define_op(
    "encoder_no_repeat_ngram_mask",
    "(Tensor logits, Tensor input_ids, Tensor encoder_input_ids, int ngram_size) -> Tensor",
    _fake_logits,
)
define_op(
    "sequence_bias",
    "(Tensor logits, Tensor input_ids, Tensor single_ids, Tensor single_biases, Tensor prefixes, "
    "Tensor last_tokens, Tensor biases) -> Tensor",
    _fake_logits,
)


# --------------------------------------------------------------------------- tables
def _is_token_id(value: object) -> bool:
    # transformers accepts Python and numpy integers (bool is an int there too).
    return isinstance(value, (int, np.integer)) and value >= 0


def _sequence_bias_dict(sequence_bias: object) -> dict[tuple[int, ...], float]:
    """transformers' ``SequenceBiasLogitsProcessor`` argument checks and list -> dict conversion.

    Raises ValueError where transformers does, and also where it would fail with an
    IndexError/TypeError (a list entry that is not a ``[ids, bias]`` pair).
    """
    if not isinstance(sequence_bias, (dict, list)) or len(sequence_bias) == 0:
        raise ValueError(
            f"sequence_bias has to be a non-empty dict {{tuple of ids: float}} or a non-empty list of "
            f"[list of ids, float] pairs, got {sequence_bias!r}"
        )
    if isinstance(sequence_bias, dict):
        for ids, bias in sequence_bias.items():
            if not isinstance(ids, tuple):
                raise ValueError(f"sequence_bias has to be a dict with tuples as keys, got key {ids!r}")
            if len(ids) == 0 or not all(_is_token_id(t) for t in ids):
                raise ValueError(
                    f"each key of sequence_bias has to be a non-empty tuple of integers >= 0, got {ids!r}"
                )
            if not isinstance(bias, float):
                raise ValueError(
                    f"sequence_bias has to be a dict with floats as values, got {bias!r} for {ids!r}"
                )
        return {tuple(int(t) for t in ids): float(bias) for ids, bias in sequence_bias.items()}
    for entry in sequence_bias:
        valid = (
            isinstance(entry, (list, tuple))
            and len(entry) >= 2
            and isinstance(entry[0], list)
            and all(_is_token_id(t) for t in entry[0])
            and isinstance(entry[1], float)
        )
        if not valid:
            raise ValueError(
                f"each element of sequence_bias has to be a [list of ids >= 0, float] pair, got {entry!r}"
            )
    # Later duplicates win, as in transformers' dict comprehension. An empty id list is
    # accepted by transformers and biases nothing; so here.
    return {tuple(int(t) for t in entry[0]): float(entry[1]) for entry in sequence_bias}


def _eos_list(eos_token_id: EosLike) -> list[int]:
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, torch.Tensor):
        return [int(t) for t in eos_token_id.reshape(-1).tolist()]
    if isinstance(eos_token_id, (Integral, np.integer)):
        return [int(eos_token_id)]
    if isinstance(eos_token_id, (list, tuple)) and all(
        isinstance(t, (Integral, np.integer)) for t in eos_token_id
    ):
        return [int(t) for t in eos_token_id]
    raise ValueError(f"eos_token_id must be an int, a list of ints, a tensor or None, got {eos_token_id!r}")


def _bad_words_dict(bad_words_ids: object, eos_token_id: EosLike) -> dict[tuple[int, ...], float]:
    """transformers' ``NoBadWordsLogitsProcessor`` checks, EOS filtering and dict of -inf biases."""
    if not isinstance(bad_words_ids, list) or len(bad_words_ids) == 0:
        raise ValueError(f"bad_words_ids has to be a non-empty list, got {bad_words_ids!r}")
    if any(not isinstance(word, list) for word in bad_words_ids):
        raise ValueError(f"bad_words_ids has to be a list of lists, got {bad_words_ids!r}")
    if any(not all(_is_token_id(t) for t in word) for word in bad_words_ids):
        raise ValueError(
            f"each list in bad_words_ids has to be a list of integers >= 0, got {bad_words_ids!r}"
        )
    eos = _eos_list(eos_token_id)
    # A lone EOS is never banned (the model must be able to stop); EOS inside a longer
    # sequence still is, as in transformers. transformers also accepts an empty word (it bans
    # nothing) and a list that EOS filtering empties (nothing banned at all): so here.
    words = [word for word in bad_words_ids if all(word != [e] for e in eos)]
    return {tuple(int(t) for t in word): -math.inf for word in words}


@dataclass(frozen=True, eq=False)
class SequenceBiasTable:
    """Biased token sequences as tensors, built once and reused at every decoding step.

    Attributes (all on one device):
        single_ids: ``(S,)`` int64, the one-token sequences; ``single_biases``: ``(S,)`` float32.
        prefixes: ``(M, L)`` int64, the first ``len - 1`` tokens of each longer sequence,
            right-aligned and left-padded with -1 ("any token"); ``L`` is the longest prefix.
        last_tokens: ``(M,)`` int64, each longer sequence's last token; ``biases``: ``(M,)`` float32.
        sequences: every biased sequence (Python ints), for error messages.
        max_token_id: the largest id in any sequence (-1 when there is none); checked against
            the vocabulary at each call without touching the device.
        name: the argument the table came from (``sequence_bias`` or ``bad_words_ids``), for
            error messages.

    Longer sequences are ordered like transformers' groups (by prefix length, in order of
    first appearance, then dict order), so bias sums add in the same order.
    """

    single_ids: torch.Tensor
    single_biases: torch.Tensor
    prefixes: torch.Tensor
    last_tokens: torch.Tensor
    biases: torch.Tensor
    sequences: tuple[tuple[int, ...], ...]
    max_token_id: int
    name: str = "sequence_bias"

    @classmethod
    def from_sequence_bias(
        cls, sequence_bias: Any, device: Union[str, torch.device, None] = None
    ) -> SequenceBiasTable:
        """From transformers' ``sequence_bias``: ``{tuple(ids): float}`` or ``[[ids, float], ...]``
        (validated as ``SequenceBiasLogitsProcessor`` does)."""
        return cls._from_dict(_sequence_bias_dict(sequence_bias), device, "sequence_bias")

    @classmethod
    def from_bad_words(
        cls, bad_words_ids: Any, eos_token_id: EosLike = None, device: Union[str, torch.device, None] = None
    ) -> SequenceBiasTable:
        """From transformers' ``bad_words_ids`` (list of id lists): each sequence gets a ``-inf``
        bias; sequences that are a single EOS id are dropped, as ``NoBadWordsLogitsProcessor``."""
        return cls._from_dict(_bad_words_dict(bad_words_ids, eos_token_id), device, "bad_words_ids")

    @classmethod
    def _from_dict(
        cls, table: dict[tuple[int, ...], float], device: Union[str, torch.device, None], name: str
    ) -> SequenceBiasTable:
        device = torch.device("cpu" if device is None else device)
        singles = [(ids[0], bias) for ids, bias in table.items() if len(ids) == 1]
        groups: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        for ids, bias in table.items():
            if len(ids) > 1:
                groups.setdefault(len(ids) - 1, []).append((ids, bias))
        longer = [item for group in groups.values() for item in group]
        width = max((len(ids) - 1 for ids, _ in longer), default=0)
        prefixes = [[_PREFIX_PAD] * (width + 1 - len(ids)) + list(ids[:-1]) for ids, _ in longer]
        sequences = tuple(table)
        return cls(
            single_ids=torch.tensor([i for i, _ in singles], dtype=torch.int64, device=device),
            single_biases=torch.tensor([b for _, b in singles], dtype=torch.float32, device=device),
            prefixes=torch.tensor(prefixes, dtype=torch.int64, device=device).reshape(len(longer), width),
            last_tokens=torch.tensor([ids[-1] for ids, _ in longer], dtype=torch.int64, device=device),
            biases=torch.tensor([b for _, b in longer], dtype=torch.float32, device=device),
            sequences=sequences,
            max_token_id=max((t for ids in sequences for t in ids), default=-1),
            name=name,
        )

    @property
    def device(self) -> torch.device:
        return self.last_tokens.device

    def to(self, device: Union[str, torch.device]) -> SequenceBiasTable:
        """The same table on ``device``."""
        return replace(
            self,
            single_ids=self.single_ids.to(device),
            single_biases=self.single_biases.to(device),
            prefixes=self.prefixes.to(device),
            last_tokens=self.last_tokens.to(device),
            biases=self.biases.to(device),
        )

    def check_vocab(self, vocab: int) -> None:
        """ValueError (listing the offending ids) when an id is >= ``vocab``, like transformers."""
        if self.max_token_id >= vocab:
            invalid = [t for ids in self.sequences for t in ids if t >= vocab]
            raise ValueError(
                f"{self.name} holds token ids >= the vocabulary size {vocab} of logits: {invalid}"
            )


# --------------------------------------------------------------------------- public API
def _check_ids(ids: object, name: str, logits: torch.Tensor) -> torch.Tensor:
    return check_token_ids(ids, name, logits.device, batch=logits.shape[0])


def no_repeat_ngram_mask(
    logits: torch.Tensor, input_ids: torch.Tensor, ngram_size: int, *, backend: Optional[str] = None
) -> torch.Tensor:
    """Ban every token that would repeat an n-gram of ``input_ids``, as transformers'
    ``NoRepeatNGramLogitsProcessor``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32, ids >= 0, prompt included (left padding is
            part of the n-grams, as in transformers). Ids ``>= vocab`` are never banned.
        ngram_size: int >= 1. With ``seq < ngram_size`` nothing is banned.

    Returns:
        New float32 ``(batch, vocab)`` logits with banned tokens at ``-inf``. All ``-inf`` rows
        stay so; a banned NaN entry becomes ``-inf``, other NaN entries stay NaN.
    """
    check_logits(logits)
    input_ids = _check_ids(input_ids, "input_ids", logits)
    ngram_size = check_int(ngram_size, "ngram_size", low=1)
    return call("no_repeat_ngram_mask", backend, logits, input_ids, ngram_size)


def encoder_no_repeat_ngram_mask(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    encoder_input_ids: torch.Tensor,
    ngram_size: int,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Ban every token that would complete an n-gram of the encoder input, as transformers'
    ``EncoderNoRepeatNGramLogitsProcessor``: with ``s`` the last ``ngram_size - 1`` tokens of
    ``input_ids``, each n-gram of the row's encoder ids that starts with ``s`` bans its last
    token (``ngram_size == 1`` bans every encoder token).

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32, ids >= 0 (the decoder ids). With
            ``seq < ngram_size - 1`` nothing is banned.
        encoder_input_ids: ``(enc_batch, enc_len)`` (or ``(enc_len,)``: one prompt) int64/int32,
            ids >= 0; ``batch`` must be a multiple of ``enc_batch``, row ``b`` uses encoder
            row ``b // (batch // enc_batch)`` (beams of one prompt are consecutive). Ids
            ``>= vocab`` are never banned (transformers raises an index error on them).
        ngram_size: int >= 1.

    Returns:
        New float32 ``(batch, vocab)`` logits with banned tokens at ``-inf``; ``-inf``/NaN as in
        :func:`no_repeat_ngram_mask`.
    """
    check_logits(logits)
    batch = logits.shape[0]
    input_ids = _check_ids(input_ids, "input_ids", logits)
    encoder_input_ids = check_encoder_ids(encoder_input_ids, batch, logits.device)
    ngram_size = check_int(ngram_size, "ngram_size", low=1)
    return call("encoder_no_repeat_ngram_mask", backend, logits, input_ids, encoder_input_ids, ngram_size)


def _run_table(
    logits: torch.Tensor, input_ids: torch.Tensor, table: SequenceBiasTable, backend: Optional[str]
):
    table.check_vocab(logits.shape[1])
    if table.device != logits.device:
        raise ValueError(
            f"{table.name} table must be on {logits.device} (the device of logits), got {table.device}; "
            f"build it there or use table.to(device)"
        )
    return call(
        "sequence_bias",
        backend,
        logits,
        input_ids,
        table.single_ids,
        table.single_biases,
        table.prefixes,
        table.last_tokens,
        table.biases,
    )


def sequence_bias(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    sequence_bias: SequenceBiasLike,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Add a bias to the last token of every sequence the next token would complete, as
    transformers' ``SequenceBiasLogitsProcessor``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32 (ids are only compared, never indexed).
        sequence_bias: ``{tuple(ids): float}``, ``[[list(ids), float], ...]`` (transformers'
            forms, validated as there: ValueError naming ``sequence_bias``) or a
            :class:`SequenceBiasTable` built once from them (on the logits' device). A
            one-token sequence's bias always applies; a longer one's applies when
            ``input_ids`` ends with its prefix. Ids ``>= vocab`` raise ValueError, as in
            transformers.

    Returns:
        New float32 ``(batch, vocab)`` logits ``scores + bias``, IEEE arithmetic: ``-inf`` stays
        ``-inf`` unless biased by ``+inf`` (then NaN); NaN entries stay NaN.
    """
    check_logits(logits)
    check_index_tensor(input_ids, "input_ids", logits.device, batch=logits.shape[0])
    if not isinstance(sequence_bias, SequenceBiasTable):
        sequence_bias = SequenceBiasTable.from_sequence_bias(sequence_bias, device=logits.device)
    return _run_table(logits, input_ids, sequence_bias, backend)


def bad_words_mask(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    bad_words_ids: Union[SequenceBiasTable, list],
    eos_token_id: EosLike = None,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Set to ``-inf`` every token that would complete a bad word, as transformers'
    ``NoBadWordsLogitsProcessor`` (a sequence bias of ``-inf``; runs the ``sequence_bias`` op).

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32.
        bad_words_ids: a non-empty list of lists of ids >= 0 (validated as in transformers:
            ValueError naming ``bad_words_ids``; an empty inner list bans nothing), or a table from
            :meth:`SequenceBiasTable.from_bad_words`. Ids ``>= vocab`` raise ValueError.
        eos_token_id: int, list of ints or tensor; a bad word that is exactly ``[eos]`` is
            dropped. Ignored when ``bad_words_ids`` is already a table.

    Returns:
        New float32 ``(batch, vocab)`` logits. Banned entries become ``-inf`` except NaN ones,
        which stay NaN (``NaN + -inf``), as in transformers; ``+inf`` banned entries become NaN.
    """
    check_logits(logits)
    check_index_tensor(input_ids, "input_ids", logits.device, batch=logits.shape[0])
    if not isinstance(bad_words_ids, SequenceBiasTable):
        bad_words_ids = SequenceBiasTable.from_bad_words(bad_words_ids, eos_token_id, device=logits.device)
    return _run_table(logits, input_ids, bad_words_ids, backend)


# --------------------------------------------------------------------------- cuda backend
# csrc/cuda/ngram.cu: the float32 copy of the rows (16-byte loads), then a kernel over the ids
# that writes only the banned / biased tokens.
import weakref  # noqa: E402

from . import _cuda_launch as _cu  # noqa: E402


@register("no_repeat_ngram_mask", "cuda")
def _no_repeat_ngram_mask_cuda(logits: torch.Tensor, input_ids: torch.Tensor, ngram_size: int) -> torch.Tensor:
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    ids, id_args = _cu.id_args(input_ids)
    with _cu.on_device(x.device):
        mod.no_repeat_ngram_mask(*args, *id_args, ngram_size, _cu.stream(x.device))
    return out


@register("encoder_no_repeat_ngram_mask", "cuda")
def _encoder_no_repeat_ngram_mask_cuda(
    logits: torch.Tensor, input_ids: torch.Tensor, encoder_input_ids: torch.Tensor, ngram_size: int
) -> torch.Tensor:
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    ids, id_args = _cu.id_args(input_ids)
    enc, (enc_ptr, enc64, enc_len, enc_stride) = _cu.id_args(encoder_input_ids)
    with _cu.on_device(x.device):
        mod.encoder_no_repeat_ngram_mask(
            *args, *id_args, enc_ptr, enc64, enc.shape[0], enc_len, enc_stride, ngram_size, _cu.stream(x.device)
        )
    return out


# The table's entries grouped by token (singles first, then the longer sequences; stable, so
# each token's entries keep table order): computed on the device once per table and kept while
# the table's tensors live and are unchanged, so a decode step pays no sort.
_ENTRY_ORDER: dict[int, tuple] = {}


def _entry_order(single_ids: torch.Tensor, last_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    key = id(last_tokens)
    versions = (single_ids._version, last_tokens._version)
    hit = _ENTRY_ORDER.get(key)
    if hit is not None and hit[0]() is last_tokens and hit[1]() is single_ids and hit[2] == versions:
        return hit[3], hit[4]
    tokens = torch.cat([single_ids.to(torch.int64), last_tokens.to(torch.int64)])
    order = torch.argsort(tokens, stable=True)
    sorted_tokens = tokens[order].contiguous()
    _ENTRY_ORDER[key] = (
        weakref.ref(last_tokens, lambda _, key=key: _ENTRY_ORDER.pop(key, None)),
        weakref.ref(single_ids),
        versions,
        order,
        sorted_tokens,
    )
    return order, sorted_tokens


@register("sequence_bias", "cuda")
def _sequence_bias_cuda(
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
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    ids, id_args = _cu.id_args(input_ids)
    order, sorted_tokens = _entry_order(single_ids, last_tokens)
    single_biases = _cpu.contiguous(single_biases, torch.float32)
    prefixes = _cpu.contiguous(prefixes, torch.int64)
    biases = _cpu.contiguous(biases, torch.float32)
    with _cu.on_device(x.device):
        mod.sequence_bias(
            *args, *id_args, order.data_ptr(), sorted_tokens.data_ptr(), single_ids.numel(),
            single_biases.data_ptr(), last_tokens.numel(), prefixes.data_ptr(), prefixes.shape[1],
            biases.data_ptr(), _cu.stream(x.device),
        )
    return out
