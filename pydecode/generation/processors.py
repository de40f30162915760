"""Logits processors with transformers' names, arguments and outputs, and the list ``generate`` builds.

Every class here is a callable ``(input_ids, scores) -> scores`` that returns what the transformers
5.24 class of the same name returns on 2-D float32 scores (the dtype ``generate`` gives processors):

* bit for bit for the masks, penalties, biases, n-gram bans, watermark and every warper (the
  torch-written ones repeat transformers' torch op sequence; the others call :mod:`pydecode.ops`,
  whose results are bit-equal to transformers' by that module's contract);
* :class:`UnbatchedClassifierFreeGuidanceLogitsProcessor` calls the model exactly as transformers does,
  so its output is equal as long as the model is deterministic.

Scores of another floating dtype are processed in float32 by the ops-backed classes and cast back.
Processors that take a ``device`` keep their token tensors there, as transformers' do.

:func:`build_logits_processor_list` mirrors ``GenerationMixin._get_logits_processor``: the same
processors, in the same order, with the same arguments, merged with a user list by the same rule
(a user processor of the same type as a built-in one replaces it; a transformers processor counts
as the pydecode class of the same name), with the same warnings. pydecode adds OpenAI's
presence/frequency penalties (config custom entries ``presence_penalty`` / ``frequency_penalty``)
right after the repetition penalty.

The per-step speed comes from :mod:`pydecode.generation.plan`, which fuses runs of these processors.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Optional, Union

import torch

from .. import ops
from ..ops.ngram import SequenceBiasTable

__all__ = [
    "EncoderNoRepeatNGramLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "ExponentialDecayLengthPenalty",
    "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor",
    "FrequencyPenaltyLogitsProcessor",
    "InfNanRemoveLogitsProcessor",
    "LogitNormalization",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "MinPLogitsWarper",
    "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "PrefixConstrainedLogitsProcessor",
    "PresencePenaltyLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "SuppressTokensAtBeginLogitsProcessor",
    "SuppressTokensLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopHLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "UnbatchedClassifierFreeGuidanceLogitsProcessor",
    "WatermarkLogitsProcessor",
    "build_logits_processor_list",
    "same_processor_type",
]

logger = logging.getLogger("pydecode.generation.processors")
_NEG_INF = -float("inf")
EosLike = Union[int, list, torch.Tensor]


def _eos_tensor(eos_token_id: EosLike, device: Any = "cpu") -> torch.Tensor:
    """transformers' conversion of an ``eos_token_id`` argument: an int becomes a one-element list."""
    if isinstance(eos_token_id, torch.Tensor):
        return eos_token_id
    if isinstance(eos_token_id, int):
        eos_token_id = [eos_token_id]
    return torch.tensor(eos_token_id, device=device)


def _cast_back(result: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """ops compute in float32; scores of another dtype get their dtype back."""
    return result if result.dtype == scores.dtype else result.to(scores.dtype)


def _check_2d(scores: torch.Tensor, name: str) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{name} needs 2-D scores (batch, vocab), got {got}")


def _vocab_mask(scores: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Bool (vocab,) mask of ``token_ids`` (ids outside the vocabulary match nothing)."""
    vocab = torch.arange(scores.shape[-1], device=scores.device)
    return torch.isin(vocab, token_ids.to(scores.device))


# --------------------------------------------------------------------------- base classes
class LogitsProcessor:
    """Base class: ``processor(input_ids, scores) -> scores`` with ``input_ids`` ``(batch, seq)`` int64 and
    ``scores`` ``(batch, vocab)`` float32 (logits, or log-probabilities under beam search)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is abstract: subclass it and define __call__")


class LogitsProcessorList(list):
    """A list of processors applied in order; accepts pydecode's and transformers' processors alike.

    Like transformers' list, a processor whose ``__call__`` takes more than ``(input_ids, scores)`` gets
    the keyword arguments passed to the list, and a missing one raises ValueError.
    """

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        for processor in self:
            parameters = list(inspect.signature(processor.__call__).parameters)
            if len(parameters) > 2:
                missing = [name for name in parameters[2:] if name not in kwargs]
                if missing:
                    raise ValueError(
                        f"Make sure that all the required parameters: {parameters} for {type(processor)} "
                        f"are passed to the logits processor (missing {missing})."
                    )
                scores = processor(input_ids, scores, **kwargs)
            else:
                scores = processor(input_ids, scores)
        return scores


# --------------------------------------------------------------------------- length / forced tokens
class MinLengthLogitsProcessor(LogitsProcessor):
    """Bans the EOS tokens while ``input_ids`` is shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_token_id: EosLike, device: Any = "cpu") -> None:
        if not isinstance(min_length, int) or min_length < 0:
            raise ValueError(f"`min_length` has to be a non-negative integer, but is {min_length}")
        self.min_length = min_length
        self.eos_token_id = _eos_tensor(eos_token_id, device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] < self.min_length:
            return torch.where(_vocab_mask(scores, self.eos_token_id), -math.inf, scores)
        return scores.clone()


class MinNewTokensLengthLogitsProcessor(LogitsProcessor):
    """Bans the EOS tokens until ``min_new_tokens`` tokens follow the first ``prompt_length_to_skip``."""

    def __init__(
        self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: EosLike, device: Any = "cpu"
    ) -> None:
        for name, value in (("prompt_length_to_skip", prompt_length_to_skip), ("min_new_tokens", min_new_tokens)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` has to be a positive integer, but is {value}")
        self.prompt_length_to_skip = prompt_length_to_skip
        self.min_new_tokens = min_new_tokens
        self.eos_token_id = _eos_tensor(eos_token_id, device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length_to_skip < self.min_new_tokens:
            return torch.where(_vocab_mask(scores, self.eos_token_id), -math.inf, scores)
        return scores.clone()


class ForcedBOSTokenLogitsProcessor(LogitsProcessor):
    """At the first generated position (``input_ids`` of length 1) only ``bos_token_id`` is allowed (score 0)."""

    def __init__(self, bos_token_id: int) -> None:
        self.bos_token_id = bos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != 1:
            return scores
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.bos_token_id] = 0
        return forced


class ForcedEOSTokenLogitsProcessor(LogitsProcessor):
    """At the last position before ``max_length`` only the EOS tokens are allowed (score 0)."""

    def __init__(self, max_length: int, eos_token_id: EosLike, device: Any = "cpu") -> None:
        self.max_length = max_length
        self.eos_token_id = _eos_tensor(eos_token_id, device)
        if torch.is_floating_point(self.eos_token_id) or bool((self.eos_token_id < 0).any()):
            raise ValueError(f"`eos_token_id` has to be a list of positive integers, but is {self.eos_token_id}")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != self.max_length - 1:
            return scores
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.eos_token_id] = 0
        return forced


class InfNanRemoveLogitsProcessor(LogitsProcessor):
    """NaN -> 0, +inf -> the dtype's max, -inf -> the dtype's min."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        info = torch.finfo(scores.dtype)
        out = torch.where(scores != scores, 0.0, scores)
        out = torch.where(scores == math.inf, info.max, out)
        return torch.where(scores == -math.inf, info.min, out)


class ExponentialDecayLengthPenalty(LogitsProcessor):
    """Raises the EOS scores by ``|s| * (factor ** (cur_len - start) - 1)`` once ``cur_len`` passes
    ``start = exponential_decay_length_penalty[0] + input_ids_seq_length``."""

    def __init__(
        self, exponential_decay_length_penalty: tuple[int, float], eos_token_id: EosLike, input_ids_seq_length: int
    ) -> None:
        self.regulation_start = exponential_decay_length_penalty[0] + input_ids_seq_length
        self.regulation_factor = exponential_decay_length_penalty[1]
        self.eos_token_id = _eos_tensor(eos_token_id)
        if torch.is_floating_point(self.eos_token_id) or bool((self.eos_token_id < 0).any()):
            raise ValueError(f"`eos_token_id` has to be a list of positive integers, but is {self.eos_token_id}")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        cur_len = input_ids.shape[-1]
        self.eos_token_id = self.eos_token_id.to(scores.device)
        if cur_len <= self.regulation_start:
            return scores
        eos_scores = scores[:, self.eos_token_id]
        growth = pow(self.regulation_factor, cur_len - self.regulation_start) - 1
        penalty = (torch.abs(eos_scores) * growth).masked_fill(~torch.isfinite(eos_scores), 0.0)
        # An added zero tensor (not an in-place add on the EOS columns) keeps -0.0 + 0 == +0.0 as there.
        penalties = torch.zeros_like(scores)
        penalties[:, self.eos_token_id] = penalty
        return scores + penalties


class SuppressTokensLogitsProcessor(LogitsProcessor):
    """Sets the listed tokens to -inf at every step."""

    def __init__(self, suppress_tokens: Iterable[int], device: Any = "cpu") -> None:
        self.suppress_tokens = torch.tensor(list(suppress_tokens), device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return torch.where(_vocab_mask(scores, self.suppress_tokens), -math.inf, scores)


class SuppressTokensAtBeginLogitsProcessor(LogitsProcessor):
    """Sets the listed tokens to -inf when ``input_ids`` has exactly ``begin_index`` tokens."""

    def __init__(self, begin_suppress_tokens: Iterable[int], begin_index: int, device: Any = "cpu") -> None:
        self.begin_suppress_tokens = torch.tensor(list(begin_suppress_tokens), device=device)
        self.begin_index = begin_index

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        mask = _vocab_mask(scores, self.begin_suppress_tokens)
        if input_ids.shape[-1] == self.begin_index:
            return torch.where(mask, -math.inf, scores)
        return scores


class LogitNormalization(LogitsProcessor):
    """``log_softmax`` over the vocabulary (for beam scores that must stay normalised after warping)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.log_softmax(dim=-1)


class PrefixConstrainedLogitsProcessor(LogitsProcessor):
    """Only the tokens ``prefix_allowed_tokens_fn(batch_id, row_ids)`` returns keep their score.

    Rows come in groups of ``num_beams`` per batch entry. A group whose every row ends with nothing
    above -inf is given the bare mask (0 on the allowed tokens), as transformers does.
    """

    def __init__(self, prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]], num_beams: int) -> None:
        self._prefix_allowed_tokens_fn = prefix_allowed_tokens_fn
        self._num_beams = num_beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        beams = self._num_beams
        batch = input_ids.shape[0] // beams
        mask = torch.full_like(scores, -math.inf)
        for row in range(batch * beams):
            allowed = self._prefix_allowed_tokens_fn(row // beams, input_ids[row])
            if len(allowed) == 0:
                raise ValueError(
                    f"`prefix_allowed_tokens_fn` returned an empty list for batch ID {row // beams}. This means "
                    "that the constraint is unsatisfiable. Please check your implementation of "
                    "`prefix_allowed_tokens_fn`"
                )
            mask[row, allowed] = 0
        constrained = scores + mask
        dead = constrained.amax(dim=-1).isneginf().view(batch, -1).all(dim=-1, keepdim=True)
        return torch.where(dead.repeat_interleave(beams, dim=0), mask, constrained)


# --------------------------------------------------------------------------- penalties
class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Every distinct token of ``input_ids`` once: ``s < 0 ? s * penalty : s / penalty`` (ops.repetition_penalty).

    ``prompt_ignore_length`` (int or ``(batch,)`` tensor): leading positions not counted (transformers
    passes the left-padding lengths). 3-D (continuous-batching) scores are not supported.
    """

    def __init__(self, penalty: float, prompt_ignore_length: Union[int, torch.Tensor, None] = None) -> None:
        if not isinstance(penalty, float) or not penalty > 0:
            raise ValueError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        if isinstance(prompt_ignore_length, int) and prompt_ignore_length < 0:
            raise ValueError(f"`prompt_ignore_length` has to be a positive integer, but is {prompt_ignore_length}")
        if isinstance(prompt_ignore_length, torch.Tensor) and prompt_ignore_length.dim() != 1:
            raise ValueError("`prompt_ignore_length` must be 1D")
        self.penalty = penalty
        self.prompt_ignore_length = prompt_ignore_length

    def _ignore_length(self, input_ids: torch.Tensor) -> Union[int, torch.Tensor, None]:
        ignore = self.prompt_ignore_length
        if isinstance(ignore, torch.Tensor):
            if input_ids.shape[0] != ignore.shape[0]:
                raise ValueError("Incompatible `prompt_ignore_length` batch size")
            ignore = self.prompt_ignore_length = ignore.to(input_ids.device)
        return ignore

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        if input_ids.dim() == 1:
            input_ids = input_ids[:, None]
        ignore = self._ignore_length(input_ids)
        # transformers drops ids >= vocab (an embedding larger than the lm_head): "ignore" is its behaviour.
        out = ops.repetition_penalty(
            scores, input_ids, self.penalty, prompt_ignore_length=ignore, out_of_vocab="ignore"
        )
        return _cast_back(out, scores)


class EncoderRepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Rewards (penalty > 1) the tokens of the encoder input: ``self.penalty`` is ``1 / penalty`` as in
    transformers (ops.encoder_repetition_penalty). Rows map to encoder rows in consecutive beam groups."""

    def __init__(self, penalty: float, encoder_input_ids: torch.LongTensor) -> None:
        if not isinstance(penalty, float) or not penalty > 0:
            raise ValueError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty = 1 / penalty
        self._given_penalty = penalty
        self.encoder_input_ids = encoder_input_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        # "raise": transformers' gather fails on encoder ids >= vocab as well.
        out = ops.encoder_repetition_penalty(
            scores, self.encoder_input_ids.to(scores.device), self._given_penalty, out_of_vocab="raise"
        )
        return _cast_back(out, scores)


class _GeneratedTokensPenalty(LogitsProcessor):
    """Shared part of the OpenAI penalties: they count only the tokens after the first ``prompt_length``."""

    _name = "penalty"

    def __init__(self, penalty: float, prompt_length: int) -> None:
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not math.isfinite(penalty):
            raise ValueError(f"`{self._name}` has to be a finite float, but is {penalty!r}")
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 0:
            raise ValueError(f"`prompt_length` has to be a non-negative integer, but is {prompt_length!r}")
        self.penalty = float(penalty)
        self.prompt_length = prompt_length

    def _apply(self, input_ids: torch.Tensor, scores: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        generated = input_ids[:, self.prompt_length :]
        # "ignore": finished rows are fed pad_token_id, which need not be an id the lm_head can emit.
        out = ops.presence_frequency_penalty(scores, generated, presence, frequency, out_of_vocab="ignore")
        return _cast_back(out, scores)


class PresencePenaltyLogitsProcessor(_GeneratedTokensPenalty):
    """OpenAI presence penalty: ``s -= penalty`` for every token generated at least once
    (tokens after the first ``prompt_length`` of ``input_ids``). No transformers counterpart."""

    _name = "presence_penalty"

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return self._apply(input_ids, scores, self.penalty, 0.0)


class FrequencyPenaltyLogitsProcessor(_GeneratedTokensPenalty):
    """OpenAI frequency penalty: ``s -= penalty * count`` for every generated token (tokens after the
    first ``prompt_length`` of ``input_ids``). No transformers counterpart."""

    _name = "frequency_penalty"

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return self._apply(input_ids, scores, 0.0, self.penalty)


# --------------------------------------------------------------------------- n-grams and biases
class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Bans every token that would repeat an n-gram of ``input_ids`` (ops.no_repeat_ngram_mask)."""

    def __init__(self, ngram_size: int) -> None:
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"`ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        if input_ids.shape[-1] < self.ngram_size:
            return scores
        return _cast_back(ops.no_repeat_ngram_mask(scores, input_ids, self.ngram_size), scores)


class EncoderNoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Bans every token that would complete an n-gram of the encoder input (ops.encoder_no_repeat_ngram_mask)."""

    def __init__(self, encoder_ngram_size: int, encoder_input_ids: torch.LongTensor) -> None:
        if not isinstance(encoder_ngram_size, int) or encoder_ngram_size <= 0:
            raise ValueError(
                f"`encoder_ngram_size` has to be a strictly positive integer, but is {encoder_ngram_size}"
            )
        self.ngram_size = encoder_ngram_size
        if encoder_input_ids.dim() == 1:
            encoder_input_ids = encoder_input_ids.unsqueeze(0)
        self.batch_size = encoder_input_ids.shape[0]
        self.encoder_input_ids = encoder_input_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        encoder_ids = self.encoder_input_ids.to(scores.device)
        return _cast_back(ops.encoder_no_repeat_ngram_mask(scores, input_ids, encoder_ids, self.ngram_size), scores)


class SequenceBiasLogitsProcessor(LogitsProcessor):
    """Adds a bias to the last token of each sequence the next token would complete (ops.sequence_bias).

    ``sequence_bias``: ``{tuple(ids): float}`` or ``[[list(ids), float], ...]``, validated as in
    transformers (ValueError); stored as the dict. The biases become a :class:`SequenceBiasTable`
    once (per device), not at every step.
    """

    def __init__(self, sequence_bias: Any) -> None:
        self._table = SequenceBiasTable.from_sequence_bias(sequence_bias)
        self.sequence_bias = (
            {tuple(item[0]): item[1] for item in sequence_bias} if isinstance(sequence_bias, list) else sequence_bias
        )

    def table(self, device: Union[str, torch.device]) -> SequenceBiasTable:
        """The bias table on ``device`` (moved once and kept)."""
        device = torch.device(device)
        if self._table.device != device:
            self._table = self._table.to(device)
        return self._table

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        return _cast_back(ops.sequence_bias(scores, input_ids, self.table(scores.device)), scores)


class NoBadWordsLogitsProcessor(SequenceBiasLogitsProcessor):
    """Sets to -inf every token that would complete a bad word; a bad word that is a lone EOS id is
    dropped (the model must be able to stop). A sequence bias of -inf, as in transformers."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: Optional[EosLike] = None) -> None:
        self.bad_word_ids = bad_words_ids
        eos = None if eos_token_id is None else _eos_tensor(eos_token_id).tolist()
        self._table = SequenceBiasTable.from_bad_words(bad_words_ids, eos)
        self.sequence_bias = {sequence: -math.inf for sequence in self._table.sequences}


# --------------------------------------------------------------------------- warpers
class TemperatureLogitsWarper(LogitsProcessor):
    """``scores / temperature`` (ops.apply_temperature)."""

    def __init__(self, temperature: float) -> None:
        if not isinstance(temperature, float) or not temperature > 0:
            message = (
                f"`temperature` (={temperature}) has to be a strictly positive float, otherwise your next token "
                "scores will be invalid."
            )
            if isinstance(temperature, float) and temperature == 0.0:
                message += " If you're looking for greedy decoding strategies, set `do_sample=False`."
            raise ValueError(message)
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        return _cast_back(ops.apply_temperature(scores, self.temperature), scores)


def _check_min_tokens(min_tokens_to_keep: Any) -> None:
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}")


class TopKLogitsWarper(LogitsProcessor):
    """Keeps the ``top_k`` largest scores and every tie of the k-th (ops.top_k_mask_logits).

    ``self.top_k`` is ``max(top_k, min_tokens_to_keep)``; it is clamped to the vocabulary at call time.
    """

    def __init__(self, top_k: int, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1) -> None:
        if not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        k = min(self.top_k, scores.shape[-1])  # the ops refuse k > vocab
        out = ops.top_k_mask_logits(scores, k, filter_value=self.filter_value, min_tokens_to_keep=1)
        return _cast_back(out, scores)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus filtering (ops.top_p_mask_logits): sorted ascending, a token is removed when the
    cumulative probability up to it is <= ``1 - top_p``; the crossing token is kept."""

    def __init__(self, top_p: float, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1) -> None:
        top_p = float(top_p)
        if top_p < 0 or top_p > 1.0:
            raise ValueError(f"`top_p` has to be a float > 0 and < 1, but is {top_p}")
        _check_min_tokens(min_tokens_to_keep)
        self.top_p = top_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        if self.top_p >= 1.0:
            # The ops treat 1 as "off" (generate leaves the warper out); the class itself still
            # removes tokens whose probability underflows to 0 (cumulative <= 0).
            ordered, order = torch.sort(scores, descending=False)
            remove = ordered.softmax(dim=-1).cumsum(dim=-1) <= 0.0
            remove[..., -self.min_tokens_to_keep :] = False
            return scores.masked_fill(remove.scatter(1, order, remove), self.filter_value)
        out = ops.top_p_mask_logits(
            scores, self.top_p, filter_value=self.filter_value, min_tokens_to_keep=self.min_tokens_to_keep
        )
        return _cast_back(out, scores)


class MinPLogitsWarper(LogitsProcessor):
    """Removes tokens with probability below ``min_p`` times the top probability (ops.min_p_mask_logits)."""

    def __init__(self, min_p: float, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1) -> None:
        if not 0 <= min_p <= 1.0:
            raise ValueError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p}")
        _check_min_tokens(min_tokens_to_keep)
        self.min_p = min_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        out = ops.min_p_mask_logits(
            scores, float(self.min_p), filter_value=self.filter_value, min_tokens_to_keep=self.min_tokens_to_keep
        )
        return _cast_back(out, scores)


class TopHLogitsWarper(LogitsProcessor):
    """Top-H (entropy) truncation over the 100 most likely tokens: keep the longest most-likely prefix
    whose cumulative entropy terms stay <= ``top_h`` times the entropy of those 100 (at least one)."""

    def __init__(self, top_h: float, filter_value: float = -float("Inf")) -> None:
        if not 0 < top_h <= 1:
            raise ValueError("`top_h` must be in the range (0, 1].")
        self.top_n = 100
        self.top_h = top_h
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        n = min(self.top_n, scores.shape[-1])
        top_scores, top_ids = torch.topk(scores, n, dim=-1, largest=True, sorted=True)
        # torch's Categorical: the same normalisation and entropy arithmetic as transformers uses.
        dist = torch.distributions.Categorical(logits=top_scores)
        probs = dist.probs
        budget = (dist.entropy() * self.top_h).unsqueeze(-1)
        keep_top = torch.cumsum(-probs * torch.log(probs), dim=-1) <= budget
        keep_top[:, 0] = True
        keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(1, top_ids, keep_top)
        out = scores.clone()
        out[~keep] = self.filter_value
        return out


class TypicalLogitsWarper(LogitsProcessor):
    """Locally typical sampling (Meister et al.): tokens ordered by ``|-log p - H|``, the smallest set
    whose mass reaches ``mass`` is kept."""

    def __init__(self, mass: float = 0.9, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1) -> None:
        mass = float(mass)
        if not (mass > 0 and mass < 1):
            raise ValueError(f"`typical_p` has to be a float > 0 and < 1, but is {mass}")
        _check_min_tokens(min_tokens_to_keep)
        self.filter_value = filter_value
        self.mass = mass
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        log_p = torch.nn.functional.log_softmax(scores, dim=-1)
        entropy = -(log_p * torch.exp(log_p)).nansum(-1, keepdim=True)
        surprise_gap, order = torch.sort(torch.abs(-log_p - entropy), descending=False)
        cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        cut = (cumulative < self.mass).sum(dim=1).clamp_(max=surprise_gap.shape[-1] - 1)
        remove = surprise_gap > surprise_gap.gather(1, cut.view(-1, 1))
        remove[..., : self.min_tokens_to_keep] = False
        return scores.masked_fill(remove.scatter(1, order, remove), self.filter_value)


def _protect_top(scores: torch.Tensor, remove: torch.Tensor, min_tokens_to_keep: int) -> torch.Tensor:
    """Never remove the ``min_tokens_to_keep`` largest scores (nor their ties)."""
    k = min(min_tokens_to_keep, scores.shape[-1])
    return remove & (scores < torch.topk(scores, k)[0][..., -1, None])


class EpsilonLogitsWarper(LogitsProcessor):
    """Epsilon sampling (Hewitt et al.): removes tokens with probability below ``epsilon``."""

    def __init__(self, epsilon: float, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1) -> None:
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise ValueError(f"`epsilon_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        if min_tokens_to_keep < 1:
            raise ValueError(
                f"`min_tokens_to_keep` has to be a strictly positive integer, but is {min_tokens_to_keep}"
            )
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        remove = _protect_top(scores, scores.softmax(dim=-1) < self.epsilon, self.min_tokens_to_keep)
        return scores.masked_fill(remove, self.filter_value)


class EtaLogitsWarper(LogitsProcessor):
    """Eta sampling (Hewitt et al.): removes tokens with probability below
    ``min(epsilon, sqrt(epsilon) * exp(-entropy))``."""

    def __init__(
        self, epsilon: float, filter_value: float = -float("Inf"), min_tokens_to_keep: int = 1, device: Any = "cpu"
    ) -> None:
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise ValueError(f"`eta_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        if min_tokens_to_keep < 1:
            raise ValueError(
                f"`min_tokens_to_keep` has to be a strictly positive integer, but is {min_tokens_to_keep}"
            )
        self.epsilon = torch.tensor(epsilon, device=device)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        entropy = torch.distributions.Categorical(logits=scores).entropy()
        eta = torch.min(self.epsilon, torch.sqrt(self.epsilon) * torch.exp(-entropy))[..., None]
        remove = _protect_top(scores, probs < eta, self.min_tokens_to_keep)
        return scores.masked_fill(remove, self.filter_value)


# --------------------------------------------------------------------------- guidance and watermark
class UnbatchedClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """Classifier-free guidance with a second, unconditional forward pass of ``model`` per step:
    ``scale * (log_softmax(scores) - u) + u`` with ``u`` the unconditional log-probabilities.

    The unconditional prompt is ``unconditional_ids`` (default: the last prompt token). The model is
    called exactly as transformers 5.24 calls it (``model(ids, attention_mask=..., use_cache=...,
    cache=...)``, reading ``out.get("cache")``): models that ignore the ``cache`` keyword therefore
    see only the newest token after the first step when ``use_cache`` is True, as in transformers.
    """

    def __init__(
        self,
        guidance_scale: float,
        model: Any,
        unconditional_ids: Optional[torch.LongTensor] = None,
        unconditional_attention_mask: Optional[torch.LongTensor] = None,
        use_cache: bool = True,
    ) -> None:
        self.guidance_scale = guidance_scale
        self.model = model
        self.unconditional_context = {
            "input_ids": unconditional_ids,
            "attention_mask": unconditional_attention_mask,
            "use_cache": use_cache,
            "cache": None,
            "first_pass": True,
        }

    def get_unconditional_logits(self, input_ids: torch.LongTensor) -> torch.Tensor:
        context = self.unconditional_context
        if context["first_pass"]:
            if context["input_ids"] is None:
                context["input_ids"] = input_ids[:, -1:]
            if context["attention_mask"] is None:
                context["attention_mask"] = torch.ones_like(context["input_ids"], dtype=torch.long)
            ids, attention_mask = context["input_ids"], context["attention_mask"]
            context["first_pass"] = False
        else:
            newest = input_ids[:, -1:]
            attention_mask = torch.cat([context["attention_mask"], torch.ones_like(newest, dtype=torch.long)], dim=1)
            ids = newest if context["use_cache"] else torch.cat([context["input_ids"], newest], dim=1)
            context["input_ids"], context["attention_mask"] = ids, attention_mask
        out = self.model(ids, attention_mask=attention_mask, use_cache=context["use_cache"], cache=context["cache"])
        context["cache"] = out.get("cache", None)
        return out.logits

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        scores = torch.nn.functional.log_softmax(scores, dim=-1)
        if self.guidance_scale == 1:
            return scores
        unconditional = torch.nn.functional.log_softmax(self.get_unconditional_logits(input_ids)[:, -1], dim=-1)
        return self.guidance_scale * (scores - unconditional) + unconditional


class WatermarkLogitsProcessor(LogitsProcessor):
    """Greenlist watermark (Kirchenbauer et al.): ``bias`` added to the green tokens.

    ``seeding_scheme`` "lefthash" / "selfhash": transformers' greenlists, bit-identical to transformers
    on CPU (ops.watermark_bias_hf; greenlists are always drawn from the CPU ``randperm`` stream, so
    on GPU they are transformers' CPU greenlists). "pydecode-hash": pydecode's hash scheme
    (ops.watermark_bias_hash; see :mod:`pydecode.ops.watermark`), found by pydecode's detector only.
    """

    def __init__(
        self,
        vocab_size: int,
        device: Any = "cpu",
        greenlist_ratio: float = 0.25,
        bias: float = 2.0,
        hashing_key: int = 15485863,
        seeding_scheme: str = "lefthash",
        context_width: int = 1,
    ) -> None:
        if seeding_scheme not in (*ops.HF_SCHEMES, ops.HASH_SCHEME):
            raise ValueError(
                f"seeding_scheme has to be one of [`selfhash`, `lefthash`, `{ops.HASH_SCHEME}`], "
                f"but found {seeding_scheme}"
            )
        if greenlist_ratio >= 1.0 or greenlist_ratio <= 0.0:
            raise ValueError(
                "greenlist_ratio has be in range between 0.0 and 1.0, exclusively. but found "
                f"{greenlist_ratio}"
            )
        self.vocab_size = vocab_size
        self.greenlist_ratio = greenlist_ratio
        self.greenlist_size = int(vocab_size * greenlist_ratio)
        self.bias = bias
        self.seeding_scheme = seeding_scheme
        self.hash_key = hashing_key
        self.context_width = context_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        _check_2d(scores, type(self).__name__)
        if input_ids.shape[-1] < self.context_width:
            logger.warning(
                f"`input_ids` should have at least `{self.context_width}` tokens but has {input_ids.shape[-1]}. "
                "The seeding will be skipped for this generation step!"
            )
            return scores
        common = dict(
            greenlist_ratio=self.greenlist_ratio, bias=self.bias, hashing_key=self.hash_key,
            context_width=self.context_width,
        )
        if self.seeding_scheme == ops.HASH_SCHEME:
            out = ops.watermark_bias_hash(scores, input_ids, **common)
        else:
            out = ops.watermark_bias_hf(
                scores, input_ids, vocab_size=self.vocab_size, seeding_scheme=self.seeding_scheme, **common
            )
        return _cast_back(out, scores)


# --------------------------------------------------------------------------- the list generate builds
def same_processor_type(custom: Any, default: Any) -> bool:
    """transformers' merge rule (``type(custom) is type(default)``), with a transformers processor counting
    as the pydecode class of the same name, so a user's transformers processor replaces our built-in one
    exactly where it replaces transformers' built-in one."""
    if type(custom) is type(default):
        return True
    custom_type = type(custom)
    return custom_type.__module__.startswith("transformers.") and custom_type.__name__ == type(default).__name__


_warned: set[str] = set()


def _merge_user_processors(defaults: LogitsProcessorList, custom: Iterable[Any]) -> LogitsProcessorList:
    custom = list(custom)
    if not custom:
        return defaults
    merged = LogitsProcessorList()
    for default in defaults:
        replacement = next((c for c in custom if same_processor_type(c, default)), None)
        if replacement is None:
            merged.append(default)
            continue
        message = (
            f"A custom logits processor of type {type(replacement)} has been passed to `.generate()`, but it was "
            f"also created in `.generate()`, given its parameterization. The custom {type(replacement)} will take "
            f"precedence. Please check the docstring of {type(replacement)} to see related `.generate()` flags."
        )
        if message not in _warned:  # transformers' warning_once
            _warned.add(message)
            logger.warning(message)
        merged.append(replacement)
    for processor in custom:
        if processor not in merged:
            merged.append(processor)
    return merged


def _config_eos(generation_config: Any, device: Any) -> Optional[torch.Tensor]:
    """``generation_config._eos_token_tensor`` as ``generate`` prepares it, else built from ``eos_token_id``."""
    if hasattr(generation_config, "_eos_token_tensor"):
        return generation_config._eos_token_tensor
    eos = generation_config.eos_token_id
    if eos is None:
        return None
    return torch.tensor([eos] if isinstance(eos, int) else list(eos), dtype=torch.long, device=device)


def _is_encoder_decoder(model: Any) -> bool:
    config = getattr(model, "config", None)
    return bool(getattr(config, "is_encoder_decoder", False))


def _model_vocab_size(model: Any) -> int:
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("a watermarking_config needs `model` (its config's vocab_size sizes the greenlists)")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return text_config.vocab_size


def _watermark_processor(watermarking_config: Any, model: Any, device: Any) -> Any:
    vocab_size = _model_vocab_size(model)
    if type(watermarking_config).__name__ != "WatermarkingConfig":
        # Another transformers scheme (SynthID): its own transformers processor runs unchanged.
        return watermarking_config.construct_processor(vocab_size, device)
    return WatermarkLogitsProcessor(
        vocab_size=vocab_size,
        device=device,
        greenlist_ratio=watermarking_config.greenlist_ratio,
        bias=watermarking_config.bias,
        hashing_key=watermarking_config.hashing_key,
        seeding_scheme=watermarking_config.seeding_scheme,
        context_width=watermarking_config.context_width,
    )


def _penalty_entry(generation_config: Any, name: str) -> Optional[float]:
    value = getattr(generation_config, name, None)
    return None if value is None or value == 0 else value


def build_logits_processor_list(
    generation_config: Any,
    input_ids_seq_length: Optional[int] = None,
    encoder_input_ids: Optional[torch.LongTensor] = None,
    prefix_allowed_tokens_fn: Optional[Callable[[int, torch.Tensor], list[int]]] = None,
    logits_processor: Optional[Iterable[Any]] = None,
    device: Any = None,
    model_kwargs: Optional[dict[str, Any]] = None,
    negative_prompt_ids: Optional[torch.Tensor] = None,
    negative_prompt_attention_mask: Optional[torch.Tensor] = None,
    model: Any = None,
) -> LogitsProcessorList:
    """The processors ``GenerationMixin._get_logits_processor`` (transformers 5.24) builds, as pydecode classes.

    Same types, order, arguments, merge with ``logits_processor`` (a user processor of a built-in's type
    replaces it; the others follow the built-ins; then the sampling warpers, watermark and
    normalisation), errors and warnings. ``generation_config`` is a pydecode or transformers
    ``GenerationConfig`` prepared as ``generate`` prepares it (defaults filled in; its
    ``_eos_token_tensor`` is used when present, else ``eos_token_id``). ``model`` provides
    ``config.is_encoder_decoder`` (False without a model), the vocabulary of the watermark and the
    second forward pass of classifier-free guidance (both raise ValueError without a model).

    pydecode extra: ``presence_penalty`` / ``frequency_penalty`` (config custom entries, 0 = off) add
    :class:`PresencePenaltyLogitsProcessor` / :class:`FrequencyPenaltyLogitsProcessor` over the tokens
    after ``input_ids_seq_length``, right after the repetition penalty.
    """
    config = generation_config
    processors = LogitsProcessorList()
    custom = [] if logits_processor is None else list(logits_processor)
    is_encoder_decoder = _is_encoder_decoder(model)
    eos = _config_eos(config, device)

    if config.guidance_scale is not None and config.guidance_scale != 1:
        if model is None:
            raise ValueError("guidance_scale needs `model`: classifier-free guidance runs a second forward pass")
        processors.append(
            UnbatchedClassifierFreeGuidanceLogitsProcessor(
                config.guidance_scale,
                model,
                unconditional_ids=negative_prompt_ids,
                unconditional_attention_mask=negative_prompt_attention_mask,
                use_cache=config.use_cache,
            )
        )
    if config.sequence_bias is not None:
        processors.append(SequenceBiasLogitsProcessor(sequence_bias=config.sequence_bias))

    # transformers checks the values too: a dummy encoder input may be filled with -100.
    has_encoder_input_ids = (
        encoder_input_ids is not None and encoder_input_ids.dim() == 2 and not bool((encoder_input_ids < 0).any())
    )
    if config.encoder_repetition_penalty is not None and config.encoder_repetition_penalty != 1.0:
        if has_encoder_input_ids:
            processors.append(
                EncoderRepetitionPenaltyLogitsProcessor(
                    penalty=config.encoder_repetition_penalty, encoder_input_ids=encoder_input_ids
                )
            )
        else:
            warnings.warn(
                "Passing `encoder_repetition_penalty` requires some form of `input_ids` to be passed to "
                "`generate`, ignoring the argument.",
                UserWarning,
                stacklevel=2,
            )
    no_prompt_ids = not is_encoder_decoder and (input_ids_seq_length is None or input_ids_seq_length == 0)
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        mask = (model_kwargs or {}).get("decoder_attention_mask" if is_encoder_decoder else "attention_mask")
        padding_lengths = (mask != 0).int().argmax(dim=1) if mask is not None else None
        processors.append(
            RepetitionPenaltyLogitsProcessor(config.repetition_penalty, prompt_ignore_length=padding_lengths)
        )
        if no_prompt_ids:
            warnings.warn(
                "Passing `repetition_penalty` with `inputs_embeds` and without `input_ids` to `generate` will "
                "apply the penalty only to newly generated tokens, not to the prompt.",
                UserWarning,
                stacklevel=2,
            )
    presence, frequency = _penalty_entry(config, "presence_penalty"), _penalty_entry(config, "frequency_penalty")
    if presence is not None:
        processors.append(PresencePenaltyLogitsProcessor(presence, input_ids_seq_length or 0))
    if frequency is not None:
        processors.append(FrequencyPenaltyLogitsProcessor(frequency, input_ids_seq_length or 0))
    if config.no_repeat_ngram_size is not None and config.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
        if no_prompt_ids:
            warnings.warn(
                "Passing `no_repeat_ngram_size` with `inputs_embeds` and without `input_ids` to `generate` will "
                "apply n-gram constraints only to newly generated tokens, not to the prompt.",
                UserWarning,
                stacklevel=2,
            )
    if config.encoder_no_repeat_ngram_size is not None and config.encoder_no_repeat_ngram_size > 0:
        if has_encoder_input_ids:
            processors.append(
                EncoderNoRepeatNGramLogitsProcessor(config.encoder_no_repeat_ngram_size, encoder_input_ids)
            )
        else:
            warnings.warn(
                "Passing `encoder_no_repeat_ngram_size` requires some form of `input_ids` to be passed to "
                "`generate`, ignoring the argument.",
                UserWarning,
                stacklevel=2,
            )
    if config.bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos))
    if config.min_length is not None and eos is not None and config.min_length > 0:
        processors.append(MinLengthLogitsProcessor(config.min_length, eos, device=device))
    if config.min_new_tokens is not None and eos is not None and config.min_new_tokens > 0:
        processors.append(
            MinNewTokensLengthLogitsProcessor(input_ids_seq_length, config.min_new_tokens, eos, device=device)
        )
    if prefix_allowed_tokens_fn is not None:
        processors.append(
            PrefixConstrainedLogitsProcessor(
                prefix_allowed_tokens_fn, max(config.num_beams, config.num_return_sequences)
            )
        )
    if config.forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(config.max_length, config.forced_eos_token_id, device=device))
    if config.remove_invalid_values is True:
        processors.append(InfNanRemoveLogitsProcessor())
    if config.exponential_decay_length_penalty is not None:
        processors.append(
            ExponentialDecayLengthPenalty(config.exponential_decay_length_penalty, eos, input_ids_seq_length)
        )
    if config.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens, device=device))
    if config.begin_suppress_tokens is not None:
        begin_index = input_ids_seq_length
        # With a forced BOS and a one-token prompt, the first free position is one later.
        if not (input_ids_seq_length > 1 or config.forced_bos_token_id is None):
            begin_index += 1
        processors.append(
            SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, begin_index, device=device)
        )

    processors = _merge_user_processors(processors, custom)

    if config.do_sample:
        # Beam sampling keeps one non-EOS candidate beyond the EOS ids, as transformers.
        if config.num_beams is not None and config.num_beams > 1:
            if isinstance(eos, list):
                min_tokens_to_keep = len(eos) + 1
            elif isinstance(eos, torch.Tensor):
                min_tokens_to_keep = eos.shape[0] + 1
            else:
                min_tokens_to_keep = 2
        else:
            min_tokens_to_keep = 1
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_h is not None:
            processors.append(TopHLogitsWarper(top_h=config.top_h))
        if config.top_k is not None and config.top_k != 0:
            processors.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=min_tokens_to_keep))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=min_tokens_to_keep))
        if config.min_p is not None:
            processors.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=min_tokens_to_keep))
        if config.typical_p is not None and config.typical_p < 1.0:
            processors.append(TypicalLogitsWarper(mass=config.typical_p, min_tokens_to_keep=min_tokens_to_keep))
        if config.epsilon_cutoff is not None and 0.0 < config.epsilon_cutoff < 1.0:
            processors.append(EpsilonLogitsWarper(epsilon=config.epsilon_cutoff, min_tokens_to_keep=min_tokens_to_keep))
        if config.eta_cutoff is not None and 0.0 < config.eta_cutoff < 1.0:
            processors.append(
                EtaLogitsWarper(epsilon=config.eta_cutoff, min_tokens_to_keep=min_tokens_to_keep, device=device)
            )

    # The watermark goes after every other change of the scores, normalisation last (transformers' order).
    if config.watermarking_config is not None:
        processors.append(_watermark_processor(config.watermarking_config, model, device))
    if config.renormalize_logits is True:
        processors.append(LogitNormalization())
    return processors
