"""Token penalties: repetition (transformers), encoder repetition (transformers) and
presence/frequency (OpenAI), plus the combined form kernels fuse.

Every op returns new float32 ``(batch, vocab)`` logits: transformers' processors see float32,
so float16/bfloat16 inputs are upcast first and the result equals the processor's output on
``logits.float()``, bit for bit, on the same device (on CUDA torch divides by a Python float
through its reciprocal, and the references do the same there).

The references are sparse: they gather the logits of the history's tokens, change them and
scatter them back (O(batch * history)), never building dense ``(batch, vocab)`` counts. They
pad one spare column past the vocabulary (the trick transformers uses) where ids that cannot
be generated (``id >= vocab``), ignored prompt positions and masked output positions land and
are dropped.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

from ._library import call, define_op
from ._registry import register
from ._validate import (
    RowParam,
    check_device,
    check_encoder_ids,
    check_logits,
    check_token_ids,
    row_param,
)

__all__ = [
    "apply_penalties",
    "encoder_repetition_penalty",
    "presence_frequency_penalty",
    "repetition_penalty",
]

IgnoreLength = Union[int, torch.Tensor, None]
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


def _hf_divide(score: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """``score / divisor`` as transformers gets it when dividing by a Python float: a true
    division on CPU, but on CUDA torch turns division by a CPU scalar into multiplication by
    its float32 reciprocal (BinaryDivTrueKernel.cu), which can differ by one ulp."""
    if score.device.type == "cuda":
        return score * torch.reciprocal(divisor)
    return score / divisor


def _repetition_padded(padded: torch.Tensor, ids: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """transformers' penalty on a padded row: every listed id once, ``s<0 ? s*p : s/p``.

    A token listed several times is gathered, penalised and scattered once per listing, but
    every listing writes the same value, so the scatter is deterministic.
    """
    ids = ids.to(torch.int64).clamp(max=padded.shape[1] - 1)
    score = padded.gather(1, ids)
    p = penalty[:, None]
    score = torch.where(score < 0, score * p, _hf_divide(score, p))
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
) -> torch.Tensor:
    """Reference of :func:`repetition_penalty`: ``penalty`` float32 ``(batch,)``,
    ``prompt_ignore_length`` int64 ``(batch,)`` or None. Returns float32 ``(batch, vocab)``."""
    padded = _padded_float32(logits)
    ids = _ignore_prompt(input_ids, prompt_ignore_length, logits.shape[1])
    return _unpad(_repetition_padded(padded, ids, penalty))


@register("encoder_repetition_penalty", "torch")
def encoder_repetition_penalty_torch(
    logits: torch.Tensor, encoder_input_ids: torch.Tensor, inv_penalty: torch.Tensor
) -> torch.Tensor:
    """Reference of :func:`encoder_repetition_penalty`: ``inv_penalty`` is float32 ``(batch,)``
    holding ``1 / penalty`` computed in float64 (transformers stores that Python float), and
    ``encoder_input_ids`` has ``batch // k`` rows, repeated ``k`` times (beams of one prompt)."""
    batch = logits.shape[0]
    if encoder_input_ids.shape[0] < batch:
        encoder_input_ids = encoder_input_ids.repeat_interleave(batch // encoder_input_ids.shape[0], dim=0)
    ids = encoder_input_ids.to(torch.int64).clamp(max=logits.shape[1])
    padded = _padded_float32(logits)
    score = padded.gather(1, ids)
    p = inv_penalty[:, None]
    score = torch.where(score < 0, score * p, _hf_divide(score, p))
    return _unpad(padded.scatter(1, ids, score))


@register("presence_frequency_penalty", "torch")
def presence_frequency_penalty_torch(
    logits: torch.Tensor,
    output_ids: torch.Tensor,
    presence_penalty: torch.Tensor,
    frequency_penalty: torch.Tensor,
    output_mask: Optional[torch.Tensor],
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


def _fake_logits(logits: torch.Tensor, *_: object) -> torch.Tensor:
    return logits.new_empty(logits.shape, dtype=torch.float32)


define_op(
    "repetition_penalty",
    "(Tensor logits, Tensor input_ids, Tensor penalty, Tensor? prompt_ignore_length) -> Tensor",
    _fake_logits,
)
define_op(
    "encoder_repetition_penalty",
    "(Tensor logits, Tensor encoder_input_ids, Tensor inv_penalty) -> Tensor",
    _fake_logits,
)
define_op(
    "presence_frequency_penalty",
    "(Tensor logits, Tensor output_ids, Tensor presence_penalty, Tensor frequency_penalty, "
    "Tensor? output_mask) -> Tensor",
    _fake_logits,
)
define_op(
    "apply_penalties",
    "(Tensor logits, Tensor? input_ids, Tensor? output_ids, Tensor? repetition_penalty, "
    "Tensor? presence_penalty, Tensor? frequency_penalty, Tensor? prompt_ignore_length, "
    "Tensor? output_mask) -> Tensor",
    _fake_logits,
)


# --------------------------------------------------------------------------- public API
def _check_ids(ids: object, name: str, logits: torch.Tensor) -> torch.Tensor:
    return check_token_ids(ids, name, logits.device, batch=logits.shape[0])


def _ignore_length_rows(
    prompt_ignore_length: IgnoreLength, batch: int, device: torch.device
) -> Optional[torch.Tensor]:
    if prompt_ignore_length is None:
        return None
    return row_param(prompt_ignore_length, "prompt_ignore_length", batch, device, dtype=torch.int64, low=0)


def _finite_rows(value: RowParam, name: str, batch: int, device: torch.device) -> torch.Tensor:
    # The float32 range: finite, and no overflow to inf when cast.
    return row_param(value, name, batch, device, low=-_FLOAT32_MAX, high=_FLOAT32_MAX)


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
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Penalise every token that occurs in ``input_ids``, as transformers'
    ``RepetitionPenaltyLogitsProcessor`` does on 2-D scores.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        input_ids: ``(batch, seq)`` int64/int32, ids >= 0 (prompt + generated tokens). Ids
            ``>= vocab`` cannot be generated and are ignored, as in transformers.
        penalty: float > 0 or a ``(batch,)`` tensor of them. Each distinct token of a row is
            penalised once: ``s < 0 ? s * p : s / p``. ``1.0`` leaves a row unchanged.
        prompt_ignore_length: int >= 0 or a ``(batch,)`` integer tensor: the leading positions
            of each row not to count (left padding, or the prompt).

    Returns:
        New float32 ``(batch, vocab)`` logits. Rows of all ``-inf`` stay all ``-inf``
        (``-inf * p``); NaN entries stay NaN and the rest of their row is penalised normally.
    """
    check_logits(logits)
    batch = logits.shape[0]
    input_ids = _check_ids(input_ids, "input_ids", logits)
    penalty_rows = row_param(penalty, "penalty", batch, logits.device, low=0.0, low_open=True)
    ignore = _ignore_length_rows(prompt_ignore_length, batch, logits.device)
    return call("repetition_penalty", backend, logits, input_ids, penalty_rows, ignore)


def encoder_repetition_penalty(
    logits: torch.Tensor,
    encoder_input_ids: torch.Tensor,
    penalty: RowParam,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Reward (``penalty > 1``) or penalise (``penalty < 1``) the tokens of the encoder input,
    as transformers' ``EncoderRepetitionPenaltyLogitsProcessor``: with ``q = 1 / penalty``,
    ``s < 0 ? s * q : s / q`` once per distinct token of the row's encoder ids.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        encoder_input_ids: ``(enc_batch, enc_len)`` int64/int32, ids >= 0; ``batch`` must be a
            multiple of ``enc_batch``: each encoder row serves ``batch // enc_batch``
            consecutive rows (its beams), as transformers' ``repeat_interleave``. Ids
            ``>= vocab`` are ignored (transformers raises an index error on them).
        penalty: float > 0 or a ``(batch,)`` tensor of them (one per logits row); 1.0 = off.

    Returns:
        New float32 ``(batch, vocab)`` logits. All ``-inf`` rows stay all ``-inf``; NaN entries
        stay NaN.
    """
    check_logits(logits)
    batch = logits.shape[0]
    encoder_input_ids = check_encoder_ids(encoder_input_ids, batch, logits.device)
    penalty_rows = row_param(
        penalty, "penalty", batch, logits.device, dtype=torch.float64, low=0.0, low_open=True
    )
    inv_penalty = (1.0 / penalty_rows).to(torch.float32)
    return call("encoder_repetition_penalty", backend, logits, encoder_input_ids, inv_penalty)


def presence_frequency_penalty(
    logits: torch.Tensor,
    output_ids: torch.Tensor,
    presence_penalty: RowParam,
    frequency_penalty: RowParam,
    *,
    output_mask: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """OpenAI presence/frequency penalties over the generated tokens (no transformers
    counterpart): ``logit[v] -= presence + frequency * count_v`` for every token with
    ``count_v > 0``, computed in float32 as ``presence + (frequency * count)``.

    Args:
        logits: ``(batch, vocab)`` float32/float16/bfloat16, any strides.
        output_ids: ``(batch, gen)`` int64/int32, ids >= 0: the generated tokens only. Ids
            ``>= vocab`` are ignored.
        presence_penalty, frequency_penalty: finite floats or ``(batch,)`` tensors (0 = off).
        output_mask: optional bool ``(batch, gen)``; only positions where it is True count
            (use it for padding and finished rows). Default: all positions.

    Returns:
        New float32 ``(batch, vocab)`` logits. ``-inf`` stays ``-inf`` (so all ``-inf`` rows
        stay so) and NaN stays NaN; other entries are penalised normally.
    """
    check_logits(logits)
    batch = logits.shape[0]
    output_ids = _check_ids(output_ids, "output_ids", logits)
    mask = _check_output_mask(output_mask, output_ids)
    presence = _finite_rows(presence_penalty, "presence_penalty", batch, logits.device)
    frequency = _finite_rows(frequency_penalty, "frequency_penalty", batch, logits.device)
    return call("presence_frequency_penalty", backend, logits, output_ids, presence, frequency, mask)


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

    Returns:
        New float32 ``(batch, vocab)`` logits, equal to the two ops applied in sequence;
        ``-inf``/NaN behave as documented there.
    """
    check_logits(logits)
    batch, device = logits.shape[0], logits.device
    rep = ignore = presence = frequency = mask = None
    if repetition_penalty is not None:
        if input_ids is None:
            raise ValueError("input_ids must be given when repetition_penalty is set")
        input_ids = _check_ids(input_ids, "input_ids", logits)
        rep = row_param(repetition_penalty, "repetition_penalty", batch, device, low=0.0, low_open=True)
        ignore = _ignore_length_rows(prompt_ignore_length, batch, device)
    else:
        input_ids = None
    if presence_penalty is not None or frequency_penalty is not None:
        if output_ids is None:
            raise ValueError("output_ids must be given when presence_penalty or frequency_penalty is set")
        output_ids = _check_ids(output_ids, "output_ids", logits)
        mask = _check_output_mask(output_mask, output_ids)
        presence = _finite_rows(
            0.0 if presence_penalty is None else presence_penalty, "presence_penalty", batch, device
        )
        frequency = _finite_rows(
            0.0 if frequency_penalty is None else frequency_penalty, "frequency_penalty", batch, device
        )
    else:
        output_ids = None
    return call(
        "apply_penalties", backend, logits, input_ids, output_ids, rep, presence, frequency, ignore, mask
    )
