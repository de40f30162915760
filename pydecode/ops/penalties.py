"""Token penalties: repetition (transformers), encoder repetition (transformers) and
presence/frequency (OpenAI), plus the combined form kernels fuse.

Every op returns new float32 ``(batch, vocab)`` logits: transformers' processors see float32,
so float16/bfloat16 inputs are upcast first and the result equals the processor's output on
``logits.float()``, bit for bit, on the same device. transformers divides by a Python float: a true
division on CPU, but on CUDA torch multiplies by the reciprocal computed in double and rounded to
float32 (see :func:`hf_penalize`); every backend does the same on the same device. Penalties
travel as float64 rows so that the reciprocal is taken from the Python float, not its float32.

Token ids must be >= 0: a negative id raises ``ValueError`` on every backend. Ids ``>= vocab``
follow the keyword ``out_of_vocab`` of every op and of :class:`PenaltyState`:

* ``"raise"`` (the default): ``ValueError`` naming the argument, the id and the vocabulary size,
  on every backend. Every position of the ids tensor is checked, also those that
  ``prompt_ignore_length``, ``output_mask`` or ``attention_mask`` exclude (the same rule as for
  negative ids: one pass over the tensor, no masked copy).
* ``"ignore"``: such ids are dropped, as transformers' ``RepetitionPenaltyLogitsProcessor`` drops
  them (models whose embedding is larger than their output layer; ``pydecode.generate`` passes it
  to stay in parity).

Where the check runs: the ``cpu`` kernels check every id in C++ (the scan they already do for
negative ids, one unsigned compare per id) and raise the ``ValueError`` through pybind11; the
other backends scan in Python first (one ``aminmax`` pass, one device sync on CUDA), which
``PYDECODE_CHECK_VALUES=0`` skips as it skips every value scan.

The references are sparse: they gather the logits of the history's tokens, change them and
scatter them back (O(batch * history)), never building dense ``(batch, vocab)`` counts. They
pad one spare column past the vocabulary (the trick transformers uses) where ids that cannot
be generated (``id >= vocab``), ignored prompt positions and masked output positions land and
are dropped.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from . import _cpu
from ._library import call, define_op
from ._registry import BackendUnavailableError, backend_unavailable_reason, get_backend, register
from ._validate import (
    RowParam,
    check_device,
    check_encoder_ids,
    check_index_tensor,
    check_logits,
    check_token_ids,
    row_param,
    scan_values,
    values_checked,
)

__all__ = [
    "OUT_OF_VOCAB",
    "PenaltyState",
    "apply_penalties",
    "apply_penalties_from_state",
    "encoder_repetition_penalty",
    "presence_frequency_penalty",
    "repetition_penalty",
]

IgnoreLength = Union[int, torch.Tensor, None]
OUT_OF_VOCAB = ("raise", "ignore")
_FLOAT32_MAX = torch.finfo(torch.float32).max


# --------------------------------------------------------------------------- references
def _padded_float32(logits: torch.Tensor) -> torch.Tensor:
    """A new float32 ``(batch, vocab + 1)`` copy; the spare last column absorbs ignored ids."""
    return F.pad(logits.float(), (0, 1))


def _unpad(padded: torch.Tensor) -> torch.Tensor:
    # Contiguous, so the result has the strides the fake kernel declares (torch.compile
    # trusts them).
    return padded[:, :-1].contiguous()


def _ignore_prompt(
    input_ids: torch.Tensor, prompt_ignore_length: Optional[torch.Tensor], vocab: int
) -> torch.Tensor:
    if prompt_ignore_length is None:
        return input_ids
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return input_ids.masked_fill(positions[None, :] < prompt_ignore_length[:, None], vocab)


def _reciprocal_rule(device: torch.device) -> bool:
    """True where transformers' ``scores / x`` (x a Python float) is a multiplication: on CUDA."""
    return device.type == "cuda"


def hf_penalize(score: torch.Tensor, penalty: torch.Tensor, reciprocal: bool) -> torch.Tensor:
    """``score < 0 ? score * p : score / p`` on float32 ``score`` as transformers computes it with
    ``p`` a Python float; ``penalty`` holds ``p`` (float64, or float32 taken exactly), broadcastable.

    ``score * p`` is ``score * float32(p)`` on every device. ``score / p`` is a true division by
    ``float32(p)`` on CPU, but on CUDA torch multiplies by the reciprocal of the CPU scalar,
    computed in double and then rounded to float32 (measured on an H200: penalty 3.1 turns 1.5 into
    1.5 * float32(1/3.1), not 1.5 * (1.0f / float32(3.1)); the two differ by one ulp for 3.1, 1.1,
    0.85, ... and agree for 1.3, 0.7). ``reciprocal`` picks the CUDA rule (see _reciprocal_rule)."""
    p32 = penalty.to(torch.float32)
    if reciprocal:
        divided = score * torch.reciprocal(penalty.to(torch.float64)).to(torch.float32)
    else:
        divided = score / p32
    return torch.where(score < 0, score * p32, divided)


def _repetition_padded(padded: torch.Tensor, ids: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """transformers' penalty on a padded row: every listed id once, ``s<0 ? s*p : s/p``.

    A token listed several times is gathered, penalised and scattered once per listing, but
    every listing writes the same value, so the scatter is deterministic.
    """
    ids = ids.to(torch.int64).clamp(max=padded.shape[1] - 1)
    score = padded.gather(1, ids)
    score = hf_penalize(score, penalty[:, None], _reciprocal_rule(padded.device))
    return padded.scatter(1, ids, score)


def _presence_frequency_padded(
    padded: torch.Tensor,
    output_ids: torch.Tensor,
    presence: torch.Tensor,
    frequency: torch.Tensor,
    output_mask: Optional[torch.Tensor],
) -> torch.Tensor:
    """``s -= presence + frequency * count`` for every token with ``count > 0``.

    Counts come from sorting each row of ids (O(G log G) per row): the count of a token is the
    length of its run, found with two binary searches. Tokens that do not occur are untouched,
    which is exactly ``s - 0``.
    """
    spare = padded.shape[1] - 1
    if output_ids.shape[1] == 0:
        return padded.clone()
    ids = output_ids.to(torch.int64).clamp(max=spare)
    if output_mask is not None:
        ids = ids.masked_fill(~output_mask, spare)
    ids = ids.sort(dim=1).values
    count = torch.searchsorted(ids, ids, right=True) - torch.searchsorted(ids, ids)
    delta = presence[:, None] + frequency[:, None] * count.to(torch.float32)
    return padded.scatter(1, ids, padded.gather(1, ids) - delta)


@register("repetition_penalty", "torch")
def repetition_penalty_torch(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    penalty: torch.Tensor,
    prompt_ignore_length: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    """Reference of :func:`repetition_penalty`: ``penalty`` float64 ``(batch,)`` (float32 is taken exactly),
    ``prompt_ignore_length`` int64 ``(batch,)`` or None. Returns float32 ``(batch, vocab)``.

    ``check_vocab`` (``out_of_vocab="raise"``) is what the public op checked in Python before this
    runs; here, as in every backend but ``cpu`` (whose kernel does the check), ids >= vocab are dropped."""
    padded = _padded_float32(logits)
    ids = _ignore_prompt(input_ids, prompt_ignore_length, logits.shape[1])
    return _unpad(_repetition_padded(padded, ids, penalty))


@register("encoder_repetition_penalty", "torch")
def encoder_repetition_penalty_torch(
    logits: torch.Tensor, encoder_input_ids: torch.Tensor, inv_penalty: torch.Tensor, check_vocab: bool = False
) -> torch.Tensor:
    """Reference of :func:`encoder_repetition_penalty`: ``inv_penalty`` is float64 ``(batch,)``
    holding ``q = 1 / penalty`` (transformers stores that Python float and computes
    ``s < 0 ? s * q : s / q``, so on CUDA the second factor is float32(1 / q) in double), and
    ``encoder_input_ids`` has ``batch // k`` rows, repeated ``k`` times (beams of one prompt)."""
    batch = logits.shape[0]
    if encoder_input_ids.shape[0] < batch:
        encoder_input_ids = encoder_input_ids.repeat_interleave(batch // encoder_input_ids.shape[0], dim=0)
    ids = encoder_input_ids.to(torch.int64).clamp(max=logits.shape[1])
    padded = _padded_float32(logits)
    score = padded.gather(1, ids)
    score = hf_penalize(score, inv_penalty[:, None], _reciprocal_rule(padded.device))
    return _unpad(padded.scatter(1, ids, score))


@register("presence_frequency_penalty", "torch")
def presence_frequency_penalty_torch(
    logits: torch.Tensor,
    output_ids: torch.Tensor,
    presence_penalty: torch.Tensor,
    frequency_penalty: torch.Tensor,
    output_mask: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    """Reference of :func:`presence_frequency_penalty`: penalties float32 ``(batch,)``,
    ``output_mask`` bool like ``output_ids`` or None. Returns float32 ``(batch, vocab)``."""
    padded = _padded_float32(logits)
    return _unpad(
        _presence_frequency_padded(padded, output_ids, presence_penalty, frequency_penalty, output_mask)
    )


@register("apply_penalties", "torch")
def apply_penalties_torch(
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
    """Reference of :func:`apply_penalties`: repetition (when ``repetition_penalty`` is given)
    then presence/frequency (when ``presence_penalty`` is given; ``frequency_penalty`` is then
    given too), both on one padded float32 copy."""
    padded = _padded_float32(logits)
    if repetition_penalty is not None and input_ids is not None:
        ids = _ignore_prompt(input_ids, prompt_ignore_length, logits.shape[1])
        padded = _repetition_padded(padded, ids, repetition_penalty)
    if presence_penalty is not None and frequency_penalty is not None and output_ids is not None:
        padded = _presence_frequency_padded(
            padded, output_ids, presence_penalty, frequency_penalty, output_mask
        )
    return _unpad(padded)


@register("apply_penalties_state", "torch")
def apply_penalties_state_torch(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    in_rep: torch.Tensor,
    counts: torch.Tensor,
    lengths: torch.Tensor,
    repetition_penalty: Optional[torch.Tensor],
    presence_penalty: Optional[torch.Tensor],
    frequency_penalty: Optional[torch.Tensor],
) -> torch.Tensor:
    """Reference of :func:`apply_penalties_from_state` on a :class:`PenaltyState`'s tensors:
    ``tokens`` int64, ``in_rep`` bool and ``counts`` int32, all ``(batch, capacity)``, of which
    the first ``lengths[b]`` (int64 ``(batch,)``) entries of row ``b`` are live and distinct.
    Penalties ``(batch,)`` (repetition float64, presence/frequency float32) or None
    (``presence_penalty`` and ``frequency_penalty`` come together). A live token gets the
    repetition penalty where ``in_rep``, then ``s -= presence + frequency * count`` where
    ``count > 0``: the float32 operations of :func:`apply_penalties_torch`, on the same padded copy."""
    padded = _padded_float32(logits)
    vocab = logits.shape[1]
    live = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
    ids = torch.where(live, tokens.clamp(max=vocab), vocab)
    score = padded.gather(1, ids)
    if repetition_penalty is not None:
        penalised = hf_penalize(score, repetition_penalty[:, None], _reciprocal_rule(padded.device))
        score = torch.where(in_rep, penalised, score)
    if presence_penalty is not None and frequency_penalty is not None:
        delta = presence_penalty[:, None] + frequency_penalty[:, None] * counts.to(torch.float32)
        score = torch.where(counts > 0, score - delta, score)
    return _unpad(padded.scatter(1, ids, score))


# --------------------------------------------------------------------------- cpu backend
def _id_rows(ids: torch.Tensor) -> tuple[torch.Tensor, tuple[int, bool, int, int, int]]:
    """``ids`` with unit stride along the row, and its (address, is_int64, rows, length, row stride)."""
    ids = _cpu.rows_view(ids)
    return ids, (ids.data_ptr(), ids.dtype == torch.int64, ids.shape[0], ids.shape[1], _cpu.row_stride(ids))


def _cpu_penalties(
    logits: torch.Tensor,
    rep_ids: Optional[torch.Tensor],
    output_ids: Optional[torch.Tensor],
    rep: Optional[torch.Tensor],
    presence: Optional[torch.Tensor],
    frequency: Optional[torch.Tensor],
    ignore: Optional[torch.Tensor],
    output_mask: Optional[torch.Tensor],
    check_vocab: bool,
) -> torch.Tensor:
    """One fused pass (csrc/cpu/penalties.cpp): the float32 copy of each row, then the sparse
    repetition and presence/frequency updates. A part is off when its penalty is None. The kernel
    checks every id (>= 0, and < vocab when ``check_vocab``) before writing anything."""
    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    out = torch.empty((batch, vocab), dtype=torch.float32)
    rep_args: tuple[int, bool, int, int, int] = (0, True, 0, 0, 0)
    gen_args: tuple[int, bool, int, int] = (0, True, 0, 0)
    rep_ptr = ignore_ptr = mask_ptr = mask_stride = presence_ptr = frequency_ptr = 0
    if rep is not None and rep_ids is not None:
        rep_ids, rep_args = _id_rows(rep_ids)
        rep = _cpu.contiguous(rep, torch.float32)
        rep_ptr = rep.data_ptr()
        if ignore is not None:
            ignore = _cpu.contiguous(ignore, torch.int64)
            ignore_ptr = ignore.data_ptr()
    if presence is not None and frequency is not None and output_ids is not None:
        output_ids, (ptr, is64, _, length, stride) = _id_rows(output_ids)
        gen_args = (ptr, is64, length, stride)
        presence = _cpu.contiguous(presence, torch.float32)
        frequency = _cpu.contiguous(frequency, torch.float32)
        presence_ptr, frequency_ptr = presence.data_ptr(), frequency.data_ptr()
        if output_mask is not None:
            output_mask = _cpu.rows_view(output_mask)
            mask_ptr, mask_stride = output_mask.data_ptr(), _cpu.row_stride(output_mask)
    _cpu.module().apply_penalties(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), out.data_ptr(),
        *rep_args, rep_ptr, ignore_ptr, *gen_args, mask_ptr, mask_stride, presence_ptr, frequency_ptr,
        check_vocab,
    )
    return out


def _register_penalty_ops(backend: str, launch: Callable[..., torch.Tensor]) -> None:
    """Register ``backend``'s four penalty ops as calls of its one fused launcher ``launch(logits,
    rep_ids, output_ids, rep, presence, frequency, ignore, output_mask, check_vocab)``, a part off
    when its penalty is None."""

    def repetition(logits: torch.Tensor, input_ids: torch.Tensor, penalty: torch.Tensor,
                   prompt_ignore_length: Optional[torch.Tensor], check_vocab: bool = False) -> torch.Tensor:
        return launch(logits, input_ids, None, penalty, None, None, prompt_ignore_length, None, check_vocab)

    def encoder_repetition(logits: torch.Tensor, encoder_input_ids: torch.Tensor, inv_penalty: torch.Tensor,
                           check_vocab: bool = False) -> torch.Tensor:
        # Same formula with q = 1 / penalty; the kernel maps row b to encoder row b // (batch // rows).
        return launch(logits, encoder_input_ids, None, inv_penalty, None, None, None, None, check_vocab)

    def presence_frequency(logits: torch.Tensor, output_ids: torch.Tensor, presence_penalty: torch.Tensor,
                           frequency_penalty: torch.Tensor, output_mask: Optional[torch.Tensor],
                           check_vocab: bool = False) -> torch.Tensor:
        return launch(logits, None, output_ids, None, presence_penalty, frequency_penalty, None, output_mask,
                      check_vocab)

    def combined(logits: torch.Tensor, input_ids: Optional[torch.Tensor], output_ids: Optional[torch.Tensor],
                 repetition_penalty: Optional[torch.Tensor], presence_penalty: Optional[torch.Tensor],
                 frequency_penalty: Optional[torch.Tensor], prompt_ignore_length: Optional[torch.Tensor],
                 output_mask: Optional[torch.Tensor], check_vocab: bool = False) -> torch.Tensor:
        return launch(logits, input_ids, output_ids, repetition_penalty, presence_penalty, frequency_penalty,
                      prompt_ignore_length, output_mask, check_vocab)

    register("repetition_penalty", backend)(repetition)
    register("encoder_repetition_penalty", backend)(encoder_repetition)
    register("presence_frequency_penalty", backend)(presence_frequency)
    register("apply_penalties", backend)(combined)


def _state_tensors(
    tokens: torch.Tensor, in_rep: torch.Tensor, counts: torch.Tensor, lengths: torch.Tensor, batch: int,
    params: tuple[Optional[torch.Tensor], ...], rep_dtype: torch.dtype = torch.float32,
) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]:
    """The apply_penalties_state kernels' inputs (both backends), checked and contiguous: the four
    state tensors, and the repetition (``rep_dtype``: float32 for the cpu kernels, which divide;
    float64 for the cuda kernels, which take the reciprocal in double) / presence / frequency
    (float32) penalties (None = off; presence and frequency only together)."""
    if in_rep.shape != tokens.shape or counts.shape != tokens.shape or lengths.shape != (batch,):
        raise ValueError("tokens, in_rep and counts must share one (batch, capacity) shape, lengths be (batch,)")
    state = [_cpu.contiguous(t, dtype) for t, dtype in
             ((tokens, torch.int64), (in_rep, torch.bool), (counts, torch.int32), (lengths, torch.int64))]
    penalties = [None if t is None else _cpu.contiguous(t, dtype)
                 for t, dtype in zip(params, (rep_dtype, torch.float32, torch.float32))]
    if penalties[1] is None or penalties[2] is None:
        penalties[1] = penalties[2] = None
    return state, penalties


def _pointers(tensors: list[Optional[torch.Tensor]]) -> list[int]:
    return [0 if t is None else t.data_ptr() for t in tensors]


_register_penalty_ops("cpu", _cpu_penalties)


@register("apply_penalties_state", "cpu")
def _apply_penalties_state_cpu(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    in_rep: torch.Tensor,
    counts: torch.Tensor,
    lengths: torch.Tensor,
    repetition_penalty: Optional[torch.Tensor],
    presence_penalty: Optional[torch.Tensor],
    frequency_penalty: Optional[torch.Tensor],
) -> torch.Tensor:
    x = _cpu.rows_view(logits)
    batch, vocab = x.shape
    capacity = tokens.shape[1]
    state, penalties = _state_tensors(
        tokens, in_rep, counts, lengths, batch, (repetition_penalty, presence_penalty, frequency_penalty)
    )
    out = torch.empty((batch, vocab), dtype=torch.float32)
    _cpu.module().apply_penalties_state(
        x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], batch, vocab, _cpu.row_stride(x), out.data_ptr(),
        *_pointers(state), capacity, capacity, *_pointers(penalties),
    )
    return out


def _fake_logits(logits: torch.Tensor, *_: object) -> torch.Tensor:
    return logits.new_empty(logits.shape, dtype=torch.float32)


define_op(
    "repetition_penalty",
    "(Tensor logits, Tensor input_ids, Tensor penalty, Tensor? prompt_ignore_length, bool check_vocab=False) "
    "-> Tensor",
    _fake_logits,
)
define_op(
    "encoder_repetition_penalty",
    "(Tensor logits, Tensor encoder_input_ids, Tensor inv_penalty, bool check_vocab=False) -> Tensor",
    _fake_logits,
)
define_op(
    "presence_frequency_penalty",
    "(Tensor logits, Tensor output_ids, Tensor presence_penalty, Tensor frequency_penalty, "
    "Tensor? output_mask, bool check_vocab=False) -> Tensor",
    _fake_logits,
)
define_op(
    "apply_penalties",
    "(Tensor logits, Tensor? input_ids, Tensor? output_ids, Tensor? repetition_penalty, "
    "Tensor? presence_penalty, Tensor? frequency_penalty, Tensor? prompt_ignore_length, "
    "Tensor? output_mask, bool check_vocab=False) -> Tensor",
    _fake_logits,
)
define_op(
    "apply_penalties_state",
    "(Tensor logits, Tensor tokens, Tensor in_rep, Tensor counts, Tensor lengths, Tensor? repetition_penalty, "
    "Tensor? presence_penalty, Tensor? frequency_penalty) -> Tensor",
    _fake_logits,
)


# --------------------------------------------------------------------------- public API
def _raises_out_of_vocab(out_of_vocab: object) -> bool:
    """True for ``"raise"``, False for ``"ignore"``; any other value is a ``ValueError``."""
    if not isinstance(out_of_vocab, str) or out_of_vocab not in OUT_OF_VOCAB:
        raise ValueError(f"out_of_vocab must be 'raise' or 'ignore', got {out_of_vocab!r}")
    return out_of_vocab == "raise"


def _scan_ids(ids: torch.Tensor, name: str, vocab: Optional[int], what: str = "the vocabulary of logits") -> None:
    """Every id ``>= 0`` and, when ``vocab`` is given (``out_of_vocab="raise"``), ``< vocab``: one
    ``aminmax`` pass and one host read (a device sync on a GPU). The messages match the cpu kernels'."""
    if ids.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(ids)).tolist()
    if low < 0:
        raise ValueError(f"{name} must hold token ids >= 0, got {low}")
    if vocab is not None and high >= vocab:
        raise ValueError(
            f"{name} must hold token ids < {vocab} ({what}), got {high} (out_of_vocab='ignore' drops such ids)"
        )


def _check_ids(ids: object, name: str, logits: torch.Tensor, scan: bool, check_vocab: bool) -> torch.Tensor:
    ids = check_token_ids(ids, name, logits.device, batch=logits.shape[0], values=False)
    if scan and values_checked():
        _scan_ids(ids, name, logits.shape[1] if check_vocab else None)
    return ids


def _ignore_length_rows(
    prompt_ignore_length: IgnoreLength, batch: int, device: torch.device, scan: bool = True
) -> Optional[torch.Tensor]:
    if prompt_ignore_length is None:
        return None
    return row_param(
        prompt_ignore_length, "prompt_ignore_length", batch, device, dtype=torch.int64, low=0, values=scan
    )


def _finite_rows(value: RowParam, name: str, batch: int, device: torch.device, scan: bool = True) -> torch.Tensor:
    # The float32 range: finite, and no overflow to inf when cast.
    return row_param(value, name, batch, device, low=-_FLOAT32_MAX, high=_FLOAT32_MAX, values=scan)


def _check_output_mask(
    output_mask: Optional[torch.Tensor], output_ids: torch.Tensor
) -> Optional[torch.Tensor]:
    if output_mask is None:
        return None
    if not isinstance(output_mask, torch.Tensor):
        raise TypeError(f"output_mask must be a bool tensor or None, got {type(output_mask).__name__}")
    if output_mask.dtype != torch.bool:
        raise TypeError(f"output_mask must be a bool tensor, got {output_mask.dtype}")
    if output_mask.shape != output_ids.shape:
        raise ValueError(
            f"output_mask must have the shape of output_ids {tuple(output_ids.shape)}, "
            f"got {tuple(output_mask.shape)}"
        )
    check_device(output_mask, "output_mask", output_ids.device)
    return output_mask


def repetition_penalty(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    penalty: RowParam,
    *,
    prompt_ignore_length: IgnoreLength = None,
    out_of_vocab: str = "raise",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Penalise every token that occurs in ``input_ids``, as transformers'
    ``RepetitionPenaltyLogitsProcessor`` does on 2-D scores.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32, ids >= 0 (prompt + generated tokens), and
            ``< vocab`` unless ``out_of_vocab="ignore"``.
        penalty: float > 0 or a ``(batch,)`` tensor of them. Each distinct token of a row is
            penalised once: ``s < 0 ? s * p : s / p``. ``1.0`` leaves a row unchanged.
        prompt_ignore_length: int >= 0 or a ``(batch,)`` integer tensor: the leading positions
            of each row not to count (left padding, or the prompt).
        out_of_vocab: ``"raise"`` (default): an id ``>= vocab`` anywhere in ``input_ids`` (also in
            the ignored leading positions) raises ``ValueError``. ``"ignore"``: such ids are
            dropped, as transformers does (they cannot be generated: models whose embedding is
            larger than their output layer).

    Returns:
        New float32 ``(batch, vocab)`` logits. Rows of all ``-inf`` stay all ``-inf``
        (``-inf * p``); NaN entries stay NaN and the rest of their row is penalised normally.
    """
    check_logits(logits)
    batch = logits.shape[0]
    check_vocab = _raises_out_of_vocab(out_of_vocab)
    scan = scan_values("repetition_penalty", logits.device, backend)
    input_ids = _check_ids(input_ids, "input_ids", logits, scan, check_vocab)
    penalty_rows = row_param(
        penalty, "penalty", batch, logits.device, dtype=torch.float64, low=0.0, low_open=True, values=scan
    )
    ignore = _ignore_length_rows(prompt_ignore_length, batch, logits.device, scan)
    return call("repetition_penalty", backend, logits, input_ids, penalty_rows, ignore, check_vocab)


def encoder_repetition_penalty(
    logits: torch.Tensor,
    encoder_input_ids: torch.Tensor,
    penalty: RowParam,
    *,
    out_of_vocab: str = "raise",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Reward (``penalty > 1``) or penalise (``penalty < 1``) the tokens of the encoder input,
    as transformers' ``EncoderRepetitionPenaltyLogitsProcessor``: with ``q = 1 / penalty``,
    ``s < 0 ? s * q : s / q`` once per distinct token of the row's encoder ids.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        encoder_input_ids: ``(enc_batch, enc_len)`` int64/int32, ids >= 0; ``batch``
            must be a multiple of ``enc_batch``: each encoder row serves ``batch // enc_batch``
            consecutive rows (its beams), as transformers' ``repeat_interleave``. Ids must be
            ``< vocab`` unless ``out_of_vocab="ignore"``.
        penalty: float > 0 or a ``(batch,)`` tensor of them (one per logits row); 1.0 = off.
        out_of_vocab: ``"raise"`` (default; transformers' ``gather`` fails on such ids too) or
            ``"ignore"`` (ids ``>= vocab`` are dropped), as in :func:`repetition_penalty`.

    Returns:
        New float32 ``(batch, vocab)`` logits. All ``-inf`` rows stay all ``-inf``; NaN entries
        stay NaN.
    """
    check_logits(logits)
    batch = logits.shape[0]
    check_vocab = _raises_out_of_vocab(out_of_vocab)
    # Always scanned in Python: the cpu kernel would name these ids "input_ids".
    encoder_input_ids = check_encoder_ids(encoder_input_ids, batch, logits.device, values=False)
    if values_checked():
        _scan_ids(encoder_input_ids, "encoder_input_ids", logits.shape[1] if check_vocab else None)
    penalty_rows = row_param(
        penalty, "penalty", batch, logits.device, dtype=torch.float64, low=0.0, low_open=True
    )
    inv_penalty = 1.0 / penalty_rows  # float64, transformers' `1 / penalty`
    return call("encoder_repetition_penalty", backend, logits, encoder_input_ids, inv_penalty, check_vocab)


def presence_frequency_penalty(
    logits: torch.Tensor,
    output_ids: torch.Tensor,
    presence_penalty: RowParam,
    frequency_penalty: RowParam,
    *,
    output_mask: Optional[torch.Tensor] = None,
    out_of_vocab: str = "raise",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """OpenAI presence/frequency penalties over the generated tokens (no transformers
    counterpart): ``logit[v] -= presence + frequency * count_v`` for every token with
    ``count_v > 0``, computed in float32 as ``presence + (frequency * count)``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        output_ids: ``(batch, gen)`` int64/int32, ids >= 0: the generated tokens only; ids must
            be ``< vocab`` unless ``out_of_vocab="ignore"``.
        presence_penalty, frequency_penalty: finite floats or ``(batch,)`` tensors (0 = off).
        output_mask: optional bool ``(batch, gen)``; only positions where it is True count
            (use it for padding and finished rows). Default: all positions.
        out_of_vocab: ``"raise"`` (default): an id ``>= vocab`` anywhere in ``output_ids`` (also
            at masked positions) raises ``ValueError``; ``"ignore"``: such ids are not counted.

    Returns:
        New float32 ``(batch, vocab)`` logits. ``-inf`` stays ``-inf`` (so all ``-inf`` rows
        stay so) and NaN stays NaN; other entries are penalised normally.
    """
    check_logits(logits)
    batch = logits.shape[0]
    check_vocab = _raises_out_of_vocab(out_of_vocab)
    scan = scan_values("presence_frequency_penalty", logits.device, backend)
    output_ids = _check_ids(output_ids, "output_ids", logits, scan, check_vocab)
    mask = _check_output_mask(output_mask, output_ids)
    presence = _finite_rows(presence_penalty, "presence_penalty", batch, logits.device, scan)
    frequency = _finite_rows(frequency_penalty, "frequency_penalty", batch, logits.device, scan)
    return call("presence_frequency_penalty", backend, logits, output_ids, presence, frequency, mask, check_vocab)


def apply_penalties(
    logits: torch.Tensor,
    input_ids: Optional[torch.Tensor],
    output_ids: Optional[torch.Tensor],
    *,
    repetition_penalty: RowParam = None,
    presence_penalty: RowParam = None,
    frequency_penalty: RowParam = None,
    prompt_ignore_length: IgnoreLength = None,
    output_mask: Optional[torch.Tensor] = None,
    out_of_vocab: str = "raise",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """:func:`repetition_penalty` then :func:`presence_frequency_penalty` in one op (the form
    kernels fuse); each part runs only when its penalty is given.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` prompt + generated ids for the repetition penalty (needed
            when ``repetition_penalty`` is given, else may be None).
        output_ids: ``(batch, gen)`` generated ids for presence/frequency (needed when either
            of them is given, else may be None).
        repetition_penalty: as ``penalty`` of :func:`repetition_penalty` (None = off).
        presence_penalty, frequency_penalty: as in :func:`presence_frequency_penalty`; None
            counts as 0 when the other is given.
        prompt_ignore_length: as in :func:`repetition_penalty` (used by the repetition part).
        output_mask: as in :func:`presence_frequency_penalty`.
        out_of_vocab: ``"raise"`` (default) or ``"ignore"``, for both ``input_ids`` and
            ``output_ids`` (only the ids of the parts that run are read and checked).

    Returns:
        New float32 ``(batch, vocab)`` logits, equal to the two ops applied in sequence;
        ``-inf``/NaN behave as documented there.
    """
    check_logits(logits)
    batch, device = logits.shape[0], logits.device
    check_vocab = _raises_out_of_vocab(out_of_vocab)
    scan = scan_values("apply_penalties", device, backend)
    rep = ignore = presence = frequency = mask = None
    if repetition_penalty is not None:
        if input_ids is None:
            raise ValueError("input_ids must be given when repetition_penalty is set")
        input_ids = _check_ids(input_ids, "input_ids", logits, scan, check_vocab)
        rep = row_param(
            repetition_penalty, "repetition_penalty", batch, device, dtype=torch.float64, low=0.0, low_open=True,
            values=scan,
        )
        ignore = _ignore_length_rows(prompt_ignore_length, batch, device, scan)
    else:
        input_ids = None
    if presence_penalty is not None or frequency_penalty is not None:
        if output_ids is None:
            raise ValueError("output_ids must be given when presence_penalty or frequency_penalty is set")
        output_ids = _check_ids(output_ids, "output_ids", logits, scan, check_vocab)
        mask = _check_output_mask(output_mask, output_ids)
        presence = _finite_rows(
            0.0 if presence_penalty is None else presence_penalty, "presence_penalty", batch, device, scan
        )
        frequency = _finite_rows(
            0.0 if frequency_penalty is None else frequency_penalty, "frequency_penalty", batch, device, scan
        )
    else:
        output_ids = None
    return call(
        "apply_penalties", backend, logits, input_ids, output_ids, rep, presence, frequency, ignore, mask,
        check_vocab,
    )


class PenaltyState:
    """The token statistics of the penalties, built once per generate call and updated by the
    decode loop after each step, so that a step applies them without rescanning the history.

    Per row it keeps the distinct token ids seen so far (prompt + generated), each with a flag
    "under the repetition penalty" and the number of times it was
    generated (for presence/frequency). :meth:`update` adds one step in O(batch) (amortised:
    the lists double when full); :func:`apply_penalties_from_state` then costs the float32 copy
    of the logits plus O(distinct tokens) per row, and equals :func:`apply_penalties` on
    ``input_ids = cat(prompt_ids, generated)``, ``output_ids = generated`` and ``output_mask``
    = the steps' ``active_mask``, bit for bit.

    Args:
        prompt_ids: ``(batch, prompt_len)`` int64/int32, ids >= 0, and ``< vocab_size`` unless
            ``out_of_vocab="ignore"``.
        vocab_size: the logits' vocabulary (ids at or above it can never be penalised).
        attention_mask: optional ``(batch, prompt_len)``; positions where it is 0 (left padding)
            are not counted. For left padding this equals ``prompt_ignore_length`` = the number
            of leading zeros.
        prompt_ignore_length: int >= 0 or ``(batch,)`` tensor, as in :func:`repetition_penalty`:
            the leading positions of ``cat(prompt, generated)`` not counted by the repetition
            penalty (also generated positions, when it exceeds the prompt).
        out_of_vocab: ``"raise"`` (default): an id ``>= vocab_size`` in ``prompt_ids`` (at any
            position, also masked or ignored ones) or in a later :meth:`update` raises
            ``ValueError``; ``"ignore"``: such ids are dropped (transformers' repetition penalty).
            The state never holds them, so :func:`apply_penalties_from_state` has no such option.

    Attributes (on the prompt's device): ``tokens`` int64, ``in_rep`` bool and ``counts`` int32,
    ``(batch, capacity + 1)`` (the last column absorbs the writes of rows with nothing to add);
    ``lengths`` int64 ``(batch,)``: the live entries of each row; ``slot`` int32
    ``(batch, vocab_size + 1)``: the index of a token in its row's list or -1, the O(1) lookup
    behind :meth:`update` (as large as one float32 logits tensor, allocated once per call).
    """

    def __init__(
        self,
        prompt_ids: torch.Tensor,
        vocab_size: int,
        *,
        attention_mask: Optional[torch.Tensor] = None,
        prompt_ignore_length: IgnoreLength = None,
        out_of_vocab: str = "raise",
    ) -> None:
        self.out_of_vocab = out_of_vocab
        self._check_vocab = _raises_out_of_vocab(out_of_vocab)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if not isinstance(prompt_ids, torch.Tensor):
            raise TypeError(f"prompt_ids must be a torch.Tensor, got {type(prompt_ids).__name__}")
        device = prompt_ids.device
        ids = check_token_ids(prompt_ids, "prompt_ids", device, values=False)
        if values_checked():
            _scan_ids(ids, "prompt_ids", vocab_size if self._check_vocab else None, "vocab_size")
        ids = ids.to(torch.int64)
        batch, prompt_len = ids.shape
        self.vocab_size = vocab_size
        self.batch = batch
        self.device = device
        self.position = prompt_len  # the position in cat(prompt, generated) of the next token
        self._ignore = _ignore_length_rows(prompt_ignore_length, batch, device)
        positions = torch.arange(prompt_len, device=device)
        drop = ids >= vocab_size
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != ids.shape:
                raise ValueError(f"attention_mask must be a tensor of shape {tuple(ids.shape)}")
            check_device(attention_mask, "attention_mask", device)
            drop |= attention_mask == 0
        if self._ignore is not None:
            drop |= positions[None, :] < self._ignore[:, None]
        # Distinct ids per row: sort, keep the first of each run (dropped ids sort last as vocab_size).
        ordered = ids.masked_fill(drop, vocab_size).sort(dim=1).values
        first = ordered < vocab_size
        first[:, 1:] &= ordered[:, 1:] != ordered[:, :-1]
        self.lengths = first.sum(dim=1)
        longest = int(self.lengths.max()) if batch and prompt_len else 0
        # Room for 64 steps before the first doubling (one entry per row per step at most).
        self._capacity = longest + 64
        self._bound = longest  # a host-side bound of lengths.max(): no device sync per step
        width = self._capacity + 1
        column = torch.where(first, first.cumsum(dim=1) - 1, self._capacity)
        self.tokens = torch.zeros((batch, width), dtype=torch.int64, device=device).scatter_(1, column, ordered)
        self.in_rep = torch.zeros((batch, width), dtype=torch.bool, device=device).scatter_(1, column, first)
        self.counts = torch.zeros((batch, width), dtype=torch.int32, device=device)
        self.slot = torch.full((batch, vocab_size + 1), -1, dtype=torch.int32, device=device)
        self.slot.scatter_(1, torch.where(first, ordered, vocab_size), torch.where(first, column, -1).to(torch.int32))
        self.slot[:, vocab_size] = -1

    @property
    def capacity(self) -> int:
        """Entries each row can hold before the next doubling."""
        return self._capacity

    def _grow(self) -> None:
        capacity = 2 * self._capacity
        for name in ("tokens", "in_rep", "counts"):
            old = getattr(self, name)
            new = old.new_zeros((self.batch, capacity + 1))
            new[:, : self._capacity] = old[:, : self._capacity]  # not the old spare column
            setattr(self, name, new)
        self._capacity = capacity

    def update(
        self, new_tokens: torch.Tensor, active_mask: Optional[torch.Tensor] = None, *, backend: Optional[str] = None
    ) -> None:
        """Add one step: ``new_tokens`` ``(batch,)`` int64/int32, ids >= 0; an id ``>= vocab_size``
        raises ``ValueError`` (state unchanged) when the state was built with ``out_of_vocab="raise"``
        and is ignored with ``"ignore"``.
        ``active_mask`` (bool ``(batch,)``, default all True) gates presence/frequency
        counting, as ``output_mask``; every token joins the repetition set, as it joins
        ``input_ids`` (finished rows keep receiving pad tokens in transformers).

        A CPU state is updated by one C++ call (``penalty_state_update``, ~1 us instead of ~100 us
        of small torch ops) unless ``backend`` (else the process-wide choice) is ``"torch"``."""
        if not isinstance(new_tokens, torch.Tensor) or new_tokens.shape != (self.batch,):
            raise ValueError(f"new_tokens must be a ({self.batch},) tensor")
        check_index_tensor(new_tokens, "new_tokens", self.device, dim=1)
        active = None if active_mask is None else _check_active(active_mask, self.batch, self.device)
        if self._bound + 1 > self._capacity:
            self._grow()
        if self._kernel_update(backend):
            # The kernel refuses negative ids, and ids >= vocab_size under "raise", itself (ValueError,
            # state unchanged): no separate check.
            tok = _cpu.contiguous(new_tokens, torch.int64)
            active = None if active is None else _cpu.contiguous(active, torch.bool)
            ignore = None if self._ignore is None else _cpu.contiguous(self._ignore, torch.int64)
            _cpu.module().penalty_state_update(
                self.tokens.data_ptr(), self.in_rep.data_ptr(), self.counts.data_ptr(), self.lengths.data_ptr(),
                self.slot.data_ptr(), self.batch, self._capacity, self._capacity + 1, self.vocab_size,
                tok.data_ptr(), 0 if active is None else active.data_ptr(), 0 if ignore is None else ignore.data_ptr(),
                self.position, self._check_vocab,
            )
        else:
            tok = check_token_ids(new_tokens[:, None], "new_tokens", self.device, values=False)
            if values_checked():
                _scan_ids(tok, "new_tokens", self.vocab_size if self._check_vocab else None, "vocab_size")
            tok = tok.to(torch.int64)[:, 0]
            self._update_torch(tok, active)
        self._bound += 1
        self.position += 1

    def _kernel_update(self, backend: Optional[str]) -> bool:
        requested = get_backend() if backend is None or backend == "auto" else backend
        if requested not in (None, "cpu"):
            return False  # torch ops, on any device
        why = backend_unavailable_reason("cpu", self.device)
        if why and requested == "cpu":
            raise BackendUnavailableError(f"backend 'cpu' requested for PenaltyState.update is unavailable: {why}")
        return not why

    def _update_torch(self, tok: torch.Tensor, active: Optional[torch.Tensor]) -> None:
        vocab = self.vocab_size
        valid = tok < vocab
        t = torch.where(valid, tok, vocab)
        slot = self.slot.gather(1, t[:, None])[:, 0].to(torch.int64)  # -1 when new (or ignored)
        new = valid & (slot < 0)
        index = torch.where(new, self.lengths, slot)
        column = torch.where(valid, index, self._capacity)[:, None]
        self.tokens.scatter_(1, column, tok[:, None])
        rep = valid
        if self._ignore is not None:
            rep = rep & (self._ignore <= self.position)
        self.in_rep.scatter_(1, column, self.in_rep.gather(1, column) | rep[:, None])
        counted = valid if active is None else valid & active
        self.counts.scatter_add_(1, column, counted[:, None].to(torch.int32))
        self.slot.scatter_(1, t[:, None], torch.where(new, self.lengths, slot).to(torch.int32)[:, None])
        self.lengths += new

    def apply(
        self,
        logits: torch.Tensor,
        *,
        repetition_penalty: RowParam = None,
        presence_penalty: RowParam = None,
        frequency_penalty: RowParam = None,
        backend: Optional[str] = None,
    ) -> torch.Tensor:
        """:func:`apply_penalties_from_state` on this state."""
        return apply_penalties_from_state(
            logits, self, repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, backend=backend,
        )


def _check_active(active_mask: object, batch: int, device: torch.device) -> torch.Tensor:
    if not isinstance(active_mask, torch.Tensor) or active_mask.dtype != torch.bool or active_mask.shape != (batch,):
        raise ValueError(f"active_mask must be a bool ({batch},) tensor or None")
    check_device(active_mask, "active_mask", device)
    return active_mask


def apply_penalties_from_state(
    logits: torch.Tensor,
    state: PenaltyState,
    *,
    repetition_penalty: RowParam = None,
    presence_penalty: RowParam = None,
    frequency_penalty: RowParam = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """:func:`apply_penalties` from a :class:`PenaltyState` instead of the full id history.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides, on the state's device,
            ``vocab == state.vocab_size``.
        state: the statistics of the prompt and the steps so far. It never holds ids ``>= vocab_size``
            (its ``out_of_vocab`` mode refused or dropped them when they were added), so this op
            reads no ids that could be out of range and has no ``out_of_vocab`` option.
        repetition_penalty, presence_penalty, frequency_penalty: as in :func:`apply_penalties`
            (None = off; one of presence/frequency given counts the other as 0).

    Returns:
        New float32 ``(batch, vocab)`` logits, equal to :func:`apply_penalties` on the history the
        state was fed (see :class:`PenaltyState`).
    """
    check_logits(logits)
    rep, presence, frequency = _state_penalties(
        logits, state, repetition_penalty, presence_penalty, frequency_penalty, "apply_penalties_state", backend
    )
    return call(
        "apply_penalties_state", backend, logits, state.tokens, state.in_rep, state.counts, state.lengths,
        rep, presence, frequency,
    )


def _state_penalties(
    logits: torch.Tensor, state: PenaltyState, repetition_penalty: RowParam, presence_penalty: RowParam,
    frequency_penalty: RowParam, op: str, backend: Optional[str],
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The state checked against the logits and the three penalties as rows (None = off)."""
    if not isinstance(state, PenaltyState):
        raise TypeError(f"state must be a PenaltyState, got {type(state).__name__}")
    if tuple(logits.shape) != (state.batch, state.vocab_size):
        raise ValueError(
            f"logits must have shape (batch, vocab_size) = {(state.batch, state.vocab_size)} of the state, "
            f"got {tuple(logits.shape)}"
        )
    check_device(logits, "logits", state.device)
    batch, device = logits.shape[0], logits.device
    scan = scan_values(op, device, backend)
    rep = presence = frequency = None
    if repetition_penalty is not None:
        rep = row_param(
            repetition_penalty, "repetition_penalty", batch, device, dtype=torch.float64, low=0.0, low_open=True,
            values=scan,
        )
    if presence_penalty is not None or frequency_penalty is not None:
        presence = _finite_rows(
            0.0 if presence_penalty is None else presence_penalty, "presence_penalty", batch, device, scan
        )
        frequency = _finite_rows(
            0.0 if frequency_penalty is None else frequency_penalty, "frequency_penalty", batch, device, scan
        )
    return rep, presence, frequency


def penalty_state_args(
    logits: torch.Tensor, state: PenaltyState, repetition_penalty: RowParam, presence_penalty: RowParam,
    frequency_penalty: RowParam, op: str, backend: Optional[str],
) -> tuple[list, list]:
    """The cpu kernels' view of a state and its penalties: contiguous (tokens int64, in_rep bool,
    counts int32, lengths int64) and float32 (repetition, presence, frequency) rows or None."""
    params = _state_penalties(logits, state, repetition_penalty, presence_penalty, frequency_penalty, op, backend)
    return _state_tensors(state.tokens, state.in_rep, state.counts, state.lengths, logits.shape[0], params)


# --------------------------------------------------------------------------- cuda backend
# csrc/cuda/penalties.cu: the float32 copy of the rows (16-byte loads), then a sparse kernel over
# the history (O(history) per row; presence/frequency counts in a per-row hash table). The kernels
# skip ids outside [0, vocab) and check no id values on the device: out_of_vocab="raise" is the
# public op's Python scan, as for negative ids (`check_vocab` is accepted and unused here).
from . import _cuda_launch as _cu  # noqa: E402


def _cuda_penalties(
    logits: torch.Tensor,
    rep_ids: Optional[torch.Tensor],
    output_ids: Optional[torch.Tensor],
    rep: Optional[torch.Tensor],
    presence: Optional[torch.Tensor],
    frequency: Optional[torch.Tensor],
    ignore: Optional[torch.Tensor],
    output_mask: Optional[torch.Tensor],
    check_vocab: bool = False,
) -> torch.Tensor:
    del check_vocab  # see above: the public op's Python scan
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    batch, device = x.shape[0], x.device
    rep_args: tuple[int, bool, int, int, int] = (0, True, 0, 0, 0)
    gen_args: tuple[int, bool, int, int] = (0, True, 0, 0)
    rep_ptr = ignore_ptr = mask_ptr = mask_stride = presence_ptr = frequency_ptr = 0
    workspace = None
    if rep is not None and rep_ids is not None:
        rep_ids, (ptr, is64, length, stride) = _cu.id_args(rep_ids)
        rep_args = (ptr, is64, rep_ids.shape[0], length, stride)
        rep = _cpu.contiguous(rep, torch.float64)  # the kernel takes float32(p) and float32(1 / p) from it
        rep_ptr = rep.data_ptr()
        if ignore is not None:
            ignore = _cpu.contiguous(ignore, torch.int64)
            ignore_ptr = ignore.data_ptr()
    if presence is not None and frequency is not None and output_ids is not None:
        output_ids, gen_args = _cu.id_args(output_ids)
        presence = _cpu.contiguous(presence, torch.float32)
        frequency = _cpu.contiguous(frequency, torch.float32)
        presence_ptr, frequency_ptr = presence.data_ptr(), frequency.data_ptr()
        if output_mask is not None:
            output_mask = _cu.rows_view(output_mask)
            mask_ptr, mask_stride = output_mask.data_ptr(), _cu.row_stride(output_mask)
        size = mod.penalties_workspace_size(batch, output_ids.shape[1])
        if size:
            workspace = torch.empty(size, dtype=torch.int32, device=device)
    with _cu.on_device(device):
        mod.apply_penalties(
            *args[:5], args[5], *rep_args, rep_ptr, ignore_ptr, *gen_args, mask_ptr, mask_stride,
            presence_ptr, frequency_ptr, 0 if workspace is None else workspace.data_ptr(),
            0 if workspace is None else workspace.numel(), _cu.stream(device),
        )
    return out


_register_penalty_ops("cuda", _cuda_penalties)


@register("apply_penalties_state", "cuda")
def _apply_penalties_state_cuda(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    in_rep: torch.Tensor,
    counts: torch.Tensor,
    lengths: torch.Tensor,
    repetition_penalty: Optional[torch.Tensor],
    presence_penalty: Optional[torch.Tensor],
    frequency_penalty: Optional[torch.Tensor],
) -> torch.Tensor:
    state, penalties = _state_tensors(
        tokens, in_rep, counts, lengths, logits.shape[0], (repetition_penalty, presence_penalty, frequency_penalty),
        rep_dtype=torch.float64,
    )
    mod = _cu.module()
    x, out, args = _cu.logits_args(logits)
    capacity = tokens.shape[1]
    with _cu.on_device(x.device):
        mod.apply_penalties_state(
            *args, *_pointers(state), capacity, capacity, *_pointers(penalties), _cu.stream(x.device),
        )
    return out
