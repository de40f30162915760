"""Assisted decoding: draft tokens cheaply, verify them with one forward of the target model.

The loop is transformers 5.24's ``_assisted_decoding`` (batch size 1, like transformers): each
round a candidate generator proposes ``k`` tokens; the target model scores the last accepted
token plus the ``k`` candidates in one forward (``k + 1`` logits rows, each through the
processor plan with the full ``input_ids`` it would have seen); the accepted prefix plus one
token chosen by the target are appended; the target's cache is cropped back to the accepted
length.

Acceptance:

* greedy (``do_sample=False``): the longest prefix of candidates equal to the target's argmax,
  plus the target's argmax after it. The output is the plain greedy output.
* sampling, no draft probabilities (prompt lookup): each position is sampled from the target's
  processed distribution with the Philox contract (offset = tokens generated before it, the
  same draw plain sampling makes there); candidates are kept while they equal the draws. The
  output is the plain sampling output for the same seed.
* sampling with an assistant model: the speculative-sampling rule (Leviathan et al. 2023,
  arXiv:2211.17192, algorithm 1; transformers' ``_speculative_sampling``): draft ``x ~ q``,
  keep it with probability ``min(1, p(x) / q(x))``; at the first rejection draw from
  ``norm(max(0, p - q))``; when all are kept, draw the bonus token from ``p``. The output is
  distributed as sampling from ``p``. Randomness (all Philox, no generator state): the
  accept uniform of generated position ``t`` is ``philox_uniform_at(seed, t, 0,
  STREAM_SPECULATIVE)``; the residual and bonus draws use the sampling stream of ``seed`` at
  ``t``; the assistant drafts with the sampling stream of a derived seed
  (``seed ^ DRAFT_SEED_XOR``), so drafts, accept tests and corrections are independent draws.
* ``sampling_backend="hf_exact"``: transformers' own torch calls (``torch.multinomial`` /
  ``torch.rand``) in transformers' order: with prompt lookup the ids equal transformers' under
  the same ``torch.manual_seed``; with an assistant the drafts (and so the ids) differ, because
  the assistant drafts differently (below).

Candidate generators:

* :class:`PromptLookupCandidateGenerator` (``prompt_lookup_num_tokens``,
  ``max_matching_ngram_size``, default 2): transformers' search — the longest n-gram first
  (from ``max_matching_ngram_size`` down to 1), matching the last ``n`` tokens against every
  window of the sequence, the leftmost window with a non-empty continuation wins; candidates
  are cut before the first token a processor forbids (scores of ones through the plan come out
  ``-inf``) and before the first EOS.
* :class:`AssistantCandidateGenerator` (``assistant_model``, same vocabulary): the assistant
  drafts up to ``num_assistant_tokens`` tokens with the same processor plan, stopping after an
  EOS or when its probability of the drafted token is below ``assistant_confidence_threshold``
  (transformers' ``ConfidenceCriteria``); ``num_assistant_tokens_schedule`` "heuristic" /
  "heuristic_transient" adds 2 after a fully accepted round and subtracts 1 (floor 1)
  otherwise, and "heuristic" writes the final value back to the assistant's generation config,
  as transformers does. Settings come from the assistant's ``generation_config`` with
  transformers' global defaults (20 tokens, "constant", threshold 0.4).

Differences from transformers (none changes greedy output; sampling stays exact in
distribution): the assistant drafts with the target's processor plan through pydecode's own
loop (transformers runs ``assistant.generate`` with a modified config, and adapts the
confidence threshold with scikit-learn's ROC curve; pydecode keeps it fixed). Not supported
(clear ``ValueError`` before any decoder call): batch size > 1, ``num_return_sequences > 1``, an
assistant with a different vocabulary (universal assisted decoding), a decoder-only assistant
for an encoder-decoder model (or the reverse), ``use_mtp``, ``assistant_early_exit``,
``speculation_type``, ``assistant_ensemble_weight``, ``output_attentions`` /
``output_hidden_states``. An encoder-decoder assistant encodes the inputs with its own encoder.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .. import ops
from ..ops.philox import STREAM_SPECULATIVE, philox_uniform_at
from .outputs import output_object
from .runner import model_cache_key, output_cache, prepare_encoder_kwargs
from .scheduler import request_seeds

__all__ = [
    "AssistantCandidateGenerator",
    "PromptLookupCandidateGenerator",
    "assisted_decode",
    "assisted_decoding",
    "check_assisted",
]

# The assistant's drafts use the sampling stream of this derived seed, so a draft is independent
# of the target's draw at the same position (a shared stream would couple the draft with the
# residual draw and bias the output distribution).
DRAFT_SEED_XOR = 0x5851F42D4C957F2D
_INT64_WRAP = 2**64


def _text_vocab(model: Any) -> Optional[int]:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return getattr(config, "vocab_size", None)


def _gen_value(config: Any, name: str, default: Any) -> Any:
    value = getattr(config, name, None) if config is not None else None
    return default if value is None else value


def check_assisted(
    model: Any, generation_config: Any, batch_size: int, assistant_model: Any = None
) -> None:
    """Raise ``ValueError`` for an assisted-decoding setup pydecode cannot run; call before any model call.

    Checks: batch size 1, ``num_return_sequences == 1``, the candidate source (``prompt_lookup_num_tokens``
    and ``max_matching_ngram_size`` > 0, or an assistant model with the target's vocabulary size, decoder-only),
    and the transformers options pydecode does not implement.
    """
    if batch_size != 1:
        raise ValueError(f"assisted generate is only supported for batch_size = 1, got batch_size={batch_size}")
    nrs = getattr(generation_config, "num_return_sequences", None)
    if nrs is not None and nrs > 1:
        raise ValueError(f"num_return_sequences has to be 1 when doing assisted generate, but is {nrs}.")
    for name in ("use_mtp", "assistant_early_exit", "speculation_type", "assistant_ensemble_weight"):
        if getattr(generation_config, name, None) not in (None, False):
            raise ValueError(f"`{name}` is not supported by pydecode's assisted decoding (got "
                             f"{getattr(generation_config, name)!r}); use transformers' generate for it")
    wants_states = getattr(generation_config, "output_attentions", False) or getattr(
        generation_config, "output_hidden_states", False
    )
    if getattr(generation_config, "return_dict_in_generate", False) and wants_states:
        raise ValueError("output_attentions / output_hidden_states are not supported with pydecode's assisted decoding")
    lookup = getattr(generation_config, "prompt_lookup_num_tokens", None)
    if lookup is not None:
        ngram = getattr(generation_config, "max_matching_ngram_size", None) or 2
        if lookup <= 0 or ngram <= 0:
            raise ValueError(
                "Invalid max_matching_ngram_size or num_output_tokens: prompt_lookup_num_tokens and "
                f"max_matching_ngram_size must be > 0, got {lookup} and {ngram}"
            )
        return  # transformers prefers prompt lookup when both are given
    if assistant_model is None:
        raise ValueError("assisted decoding needs an assistant_model or prompt_lookup_num_tokens")
    target_ed = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    assistant_ed = bool(getattr(getattr(assistant_model, "config", None), "is_encoder_decoder", False))
    if target_ed != assistant_ed:
        raise ValueError(
            "the main model and the assistant must both be decoder-only or both encoder-decoder models "
            f"(main is_encoder_decoder={target_ed}, assistant is_encoder_decoder={assistant_ed})"
        )
    target_vocab, assistant_vocab = _text_vocab(model), _text_vocab(assistant_model)
    if target_vocab is None or assistant_vocab is None or target_vocab != assistant_vocab:
        raise ValueError(
            f"the assistant model's vocabulary size ({assistant_vocab}) differs from the main model's "
            f"({target_vocab}): pydecode's assisted decoding needs an assistant with the same tokenizer "
            "(universal assisted decoding with two tokenizers is not supported)"
        )


# --------------------------------------------------------------------------- model stepping
def _fit_mask(kwargs: dict, key: str, length: int) -> None:
    """Crop or extend (with ones) the 2-D mask ``kwargs[key]`` to ``length`` columns."""
    mask = kwargs.get(key)
    if mask is None:
        return
    diff = length - mask.shape[1]
    if diff < 0:
        kwargs[key] = mask[:, :length]
    elif diff > 0:
        kwargs[key] = torch.cat([mask, mask.new_ones((mask.shape[0], diff))], dim=-1)


def _fit_positions(kwargs: dict, key: str, length: int) -> None:
    positions = kwargs.get(key)
    if positions is None:
        return
    diff = length - positions.shape[-1]
    if diff < 0:
        kwargs[key] = positions[..., :length]
    elif diff > 0:
        shape = [1] * (positions.dim() - 1) + [-1]
        extra = torch.arange(1, diff + 1, dtype=positions.dtype, device=positions.device).view(*shape)
        kwargs[key] = torch.cat([positions, positions[..., -1:] + extra], dim=-1)


class _Stepper:
    """Feeds a transformers model the uncached suffix of a sequence, with its own input plumbing
    (``prepare_inputs_for_generation``), and crops its cache back when tokens are rejected."""

    def __init__(self, model: Any, model_kwargs: dict) -> None:
        self.model = model
        self.kwargs = model_kwargs
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.mask_key = "decoder_attention_mask" if self.is_encoder_decoder else "attention_mask"
        self.position_key = "decoder_position_ids" if self.is_encoder_decoder else "position_ids"
        self.cache_key = model_cache_key(model)
        if self.kwargs.get(self.cache_key) is None:
            from transformers import DynamicCache

            self.kwargs[self.cache_key] = DynamicCache(config=model.config)
        self.first = True

    @property
    def cache(self) -> Any:
        return self.kwargs.get(self.cache_key)

    def cached_length(self) -> int:
        return int(self.cache.get_seq_length())

    def crop(self, length: int) -> None:
        """Keep the first ``length`` cached positions."""
        extra = self.cached_length() - length
        if extra > 0:
            self.cache.crop(-extra)

    def logits(self, input_ids: torch.Tensor, rows: int) -> torch.Tensor:
        """float32 ``(1, rows, V)``: the model's logits at the last ``rows`` positions of ``input_ids``.

        The cache is first cropped to at most ``len - rows`` positions (entries past that may hold
        rejected tokens); the uncached suffix is fed in one forward.
        """
        length = input_ids.shape[1]
        self.crop(min(self.cached_length(), length - rows))
        fed = length - self.cached_length()
        _fit_mask(self.kwargs, self.mask_key, length)
        _fit_positions(self.kwargs, self.position_key, length)
        token_types = self.kwargs.get("token_type_ids")
        if token_types is not None and token_types.shape[1] != length:
            # transformers extends token types with the last column's value.
            diff = length - token_types.shape[1]
            self.kwargs["token_type_ids"] = (
                token_types[:, :length] if diff < 0
                else torch.cat([token_types, token_types[:, -1:].expand(-1, diff)], dim=1)
            )
        inputs = self.model.prepare_inputs_for_generation(
            input_ids, next_sequence_length=None if self.first else fed, is_first_iteration=self.first, **self.kwargs
        )
        if "logits_to_keep" in inputs:
            inputs["logits_to_keep"] = rows
        outputs = self.model(**inputs, return_dict=True)
        cache = output_cache(outputs)
        if self.first and cache is not None and not getattr(cache, "is_croppable", True):
            raise ValueError(
                "Assisted decoding requires a cache that can be cropped to restore the states after draft verification"
            )
        self.first = False
        if cache is not None:
            self.kwargs[self.cache_key] = cache
        return outputs.logits[:, -rows:].to(dtype=torch.float32, device=input_ids.device)


# --------------------------------------------------------------------------- candidate generators
class PromptLookupCandidateGenerator:
    """Candidates copied from earlier in the sequence (prompt lookup decoding, transformers' rules).

    Args:
        eos_token_id: 1-D int64 tensor of EOS ids or None.
        num_output_tokens: candidates per round (``prompt_lookup_num_tokens``), > 0.
        max_matching_ngram_size: longest n-gram to match, > 0.
        max_length: the call's ``max_length``.
        plan: the processor plan (its ``process`` finds forbidden tokens) or None.
        vocab_size: width of the scores the plan sees.
    """

    def __init__(
        self,
        eos_token_id: Optional[torch.Tensor],
        num_output_tokens: int,
        max_matching_ngram_size: int,
        max_length: int,
        plan: Any = None,
        vocab_size: Optional[int] = None,
    ) -> None:
        if max_matching_ngram_size <= 0 or num_output_tokens <= 0:
            raise ValueError("Invalid max_matching_ngram_size or num_output_tokens: both must be > 0")
        if plan is not None and vocab_size is None:
            raise ValueError("vocab_size is required with a processor plan")
        self.eos_token_id = eos_token_id
        self.num_output_tokens = num_output_tokens
        self.max_matching_ngram_size = max_matching_ngram_size
        self.max_length = max_length
        self.plan = plan
        self.vocab_size = vocab_size

    def _allowed_prefix(self, input_ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        # transformers' check: scores of ones through the processors; a candidate whose score
        # comes out -inf (or the float32 minimum) is forbidden, and the candidates stop before it.
        ones = torch.ones((1, self.vocab_size), dtype=torch.float32, device=input_ids.device)
        seq = input_ids
        for i in range(chosen.shape[0]):
            value = float(self.plan.process(seq, ones)[0, chosen[i]])
            if value == float("-inf") or value == torch.finfo(torch.float32).min:
                return chosen[:i]
            seq = torch.cat([input_ids, chosen[None, : i + 1]], dim=1)
        return chosen

    def get_candidates(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``(1, k)`` int64 candidate tokens (``k`` may be 0) and no draft logits."""
        length = input_ids.shape[1]
        empty = input_ids.new_empty((1, 0))
        if self.max_length == length + 1:
            return empty, None
        row = input_ids[0]
        for size in range(min(self.max_matching_ngram_size, length - 1), 0, -1):
            windows = row.unfold(0, size, 1)
            starts = (windows == row[-size:]).all(dim=1).nonzero()[:, 0].tolist()
            for start in starts:
                begin = start + size
                end = min(begin + self.num_output_tokens, length, self.max_length)
                if begin >= end:
                    continue
                chosen = row[begin:end]
                if self.plan is not None:
                    chosen = self._allowed_prefix(input_ids, chosen)
                    if chosen.shape[0] == 0:
                        continue
                if self.eos_token_id is not None:
                    hits = torch.isin(chosen, self.eos_token_id.to(chosen.device)).nonzero()
                    if hits.numel():
                        chosen = chosen[: int(hits[0, 0])]
                return chosen[None, :], None
        return empty, None

    def update(self, num_candidates: int, num_matches: int) -> None:
        return None


class AssistantCandidateGenerator:
    """Candidates drafted by a smaller model with the target's vocabulary (see the module docstring)."""

    def __init__(
        self,
        assistant_model: Any,
        model_kwargs: dict,
        plan: Any,
        *,
        eos_token_id: Optional[torch.Tensor],
        max_length: int,
        prompt_length: int,
        do_sample: bool,
        seed: Optional[torch.Tensor],
        hf_exact: bool = False,
        generator: Optional[torch.Generator] = None,
        inputs_tensor: Optional[torch.Tensor] = None,
    ) -> None:
        self.assistant_model = assistant_model
        gen_config = getattr(assistant_model, "generation_config", None)
        self.num_assistant_tokens = _gen_value(gen_config, "num_assistant_tokens", 20)
        self.schedule = _gen_value(gen_config, "num_assistant_tokens_schedule", "constant")
        self.confidence_threshold = _gen_value(gen_config, "assistant_confidence_threshold", 0.4)
        kwargs: dict = {}
        for key in ("attention_mask", "token_type_ids", "position_ids", "decoder_attention_mask"):
            value = model_kwargs.get(key)
            if isinstance(value, torch.Tensor):
                kwargs[key] = value.detach().clone()
        kwargs["use_cache"] = True
        if getattr(assistant_model.config, "is_encoder_decoder", False):
            kwargs = self._encode(assistant_model, inputs_tensor, kwargs)
        supports_keep = getattr(assistant_model, "_supports_logits_to_keep", None)
        if supports_keep is not None and supports_keep():
            kwargs["logits_to_keep"] = 1  # the assistant only needs its last position's logits
        self.stepper = _Stepper(assistant_model, kwargs)
        self.plan = plan
        self.eos_token_id = eos_token_id
        self.max_length = max_length
        self.prompt_length = prompt_length
        self.do_sample = do_sample
        self.hf_exact = hf_exact
        self.generator = generator
        self.draft_seed = None
        if seed is not None:
            self.draft_seed = seed ^ _signed(DRAFT_SEED_XOR)

    @staticmethod
    def _encode(assistant_model: Any, inputs_tensor: Optional[torch.Tensor], kwargs: dict) -> dict:
        """The assistant's own encoder outputs and an encoder-decoder cache (its encoder may differ
        from the main model's), prepared with the assistant's methods as transformers does."""
        from transformers import DynamicCache, EncoderDecoderCache

        if inputs_tensor is None:
            raise ValueError("an encoder-decoder assistant needs the encoder inputs (inputs_tensor)")
        gen_config = assistant_model.generation_config
        inputs, input_name, kwargs = assistant_model._prepare_model_inputs(inputs_tensor, gen_config.bos_token_id,
                                                                           kwargs)
        kwargs = prepare_encoder_kwargs(assistant_model, inputs, kwargs, input_name, gen_config)
        kwargs[model_cache_key(assistant_model)] = EncoderDecoderCache(
            DynamicCache(config=assistant_model.config), DynamicCache(config=assistant_model.config)
        )
        return kwargs

    def get_candidates(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(1, k)`` drafted tokens and their ``(1, k, V)`` processed assistant scores (``k`` may be 0)."""
        length = input_ids.shape[1]
        budget = min(int(self.num_assistant_tokens), self.max_length - length - 1)
        if budget <= 0:
            return input_ids.new_empty((1, 0)), None
        device = input_ids.device
        ids = input_ids
        tokens, rows = [], []
        for j in range(budget):
            logits = self.stepper.logits(ids, 1)[:, 0]
            if self.do_sample and self.hf_exact:
                processed = self.plan.process(ids, logits)
                token = torch.multinomial(processed.softmax(-1), 1, generator=self.generator)[:, 0]
            else:
                offset = None
                if self.do_sample:
                    offset = torch.full((1,), length + j - self.prompt_length, dtype=torch.int64, device=device)
                token, processed = self.plan.next_tokens(ids, logits, self.draft_seed, offset, True)
            tokens.append(token)
            rows.append(processed)
            ids = torch.cat([ids, token[:, None]], dim=1)
            if self.eos_token_id is not None and bool(torch.isin(token, self.eos_token_id.to(device)).any()):
                break
            if self.confidence_threshold and float(processed.softmax(-1)[0, token[0]]) < self.confidence_threshold:
                break
        return torch.stack(tokens, dim=1), torch.stack(rows, dim=1)

    def update(self, num_candidates: int, num_matches: int) -> None:
        if self.schedule in ("heuristic", "heuristic_transient"):
            if num_matches == num_candidates:
                self.num_assistant_tokens += 2
            else:
                self.num_assistant_tokens = max(1, self.num_assistant_tokens - 1)

    def finish(self) -> None:
        # transformers keeps the learned draft length on the assistant for the next call ("heuristic").
        gen_config = getattr(self.assistant_model, "generation_config", None)
        if self.schedule == "heuristic" and gen_config is not None:
            gen_config.num_assistant_tokens = self.num_assistant_tokens


def _signed(value: int) -> int:
    return value - _INT64_WRAP if value >= 2**63 else value


# --------------------------------------------------------------------------- acceptance
def _first_rejection(accepted: torch.Tensor) -> int:
    """Number of leading ``True`` in a 1-D bool tensor."""
    return int((~accepted).cumsum(dim=-1).eq(0).sum())


def _speculative_philox(
    candidates: torch.Tensor,
    draft_scores: torch.Tensor,
    processed: torch.Tensor,
    seed: torch.Tensor,
    offset0: int,
) -> tuple[torch.Tensor, int]:
    """Speculative sampling with Philox draws. ``candidates (1, k)``, ``draft_scores (1, k, V)`` (q),
    ``processed (1, k + 1, V)`` (p). Returns the chosen tokens ``(1, n + 1)`` and ``n``."""
    k = candidates.shape[1]
    device = candidates.device
    q = draft_scores.softmax(dim=-1)
    p = processed.softmax(dim=-1)
    positions = torch.arange(k, device=device)
    q_i = q[0, positions, candidates[0]]
    p_i = p[0, positions, candidates[0]]
    offsets = offset0 + positions.to(torch.int64)
    r = philox_uniform_at(seed.expand(k), offsets, torch.zeros_like(offsets), STREAM_SPECULATIVE)
    n = _first_rejection(r <= p_i / q_i)
    offset = torch.full((1,), offset0 + n, dtype=torch.int64, device=device)
    residual = torch.clamp(p[:, n] - q[:, n], min=0) if n < k else None
    if residual is not None and float(residual.sum()) > torch.finfo(torch.float32).tiny:
        # sampling_from_probs needs no normalisation (it samples log(probs) by Gumbel-max).
        token = ops.sampling_from_probs(residual, seed=seed, offset=offset)
    else:
        # All accepted, or a rejection where p and q agree to rounding (the residual is empty):
        # draw from p, the distribution the residual would approximate.
        token = ops.sampling_from_logits(processed[:, n], seed=seed, offset=offset)
    return torch.cat([candidates[:, :n], token[:, None]], dim=1), n


def _speculative_hf(
    candidates: torch.Tensor, draft_scores: torch.Tensor, processed: torch.Tensor, generator: Any
) -> tuple[torch.Tensor, int]:
    """transformers' ``_speculative_sampling`` draws (``torch.rand`` then ``torch.multinomial``)."""
    k = candidates.shape[1]
    q = draft_scores.softmax(dim=-1)
    p = processed.softmax(dim=-1)
    positions = torch.arange(k, device=candidates.device)
    q_i = q[0, positions, candidates[0]]
    p_i = p[0, positions, candidates[0]]
    ratio = p_i / q_i
    r = torch.rand(ratio.shape, dtype=ratio.dtype, device=ratio.device, generator=generator)
    n = _first_rejection(r <= ratio)
    if n < k:
        residual = torch.clamp(p[:, n] - q[:, n], min=0)
        residual = residual / residual.sum()
    else:
        residual = p[:, n]
    token = torch.multinomial(residual, 1, generator=generator)[:, 0]
    return torch.cat([candidates[:, :n], token[:, None]], dim=1), n


# --------------------------------------------------------------------------- the loop
def assisted_decode(
    model: Any,
    input_ids: torch.Tensor,
    plan: Any,
    stopping_criteria: Any,
    settings: Any,
    *,
    generation_config: Any,
    model_kwargs: dict,
    assistant_model: Any = None,
    streamer: Any = None,
    encoder_outputs: Any = None,
    inputs_tensor: Optional[torch.Tensor] = None,
) -> Any:
    """Assisted greedy search / sampling (see the module docstring); same return values as
    :func:`pydecode.generation.scheduler.decode`.

    Args:
        model: the target transformers model.
        input_ids: ``(1, L)`` int64 prompt (decoder input ids for encoder-decoder models).
        plan: the processor plan (``process``, ``next_tokens``) built for "greedy" or "sample".
        stopping_criteria: callable ``(input_ids, scores) -> (1,)`` bool (a criteria list).
        settings: the scheduler's ``DecodeSettings`` (max_length, do_sample, outputs, seed, ...).
        generation_config: the final generation config (candidate settings, EOS ids).
        model_kwargs: the target's prepared kwargs (attention mask, cache, encoder outputs);
            updated in place.
        assistant_model: the draft model (unless ``prompt_lookup_num_tokens`` is set).
        streamer: fed the accepted tokens of each round, then ``end()`` (the caller puts the prompt).
        encoder_outputs: for the encoder-decoder output object.
        inputs_tensor: the encoder inputs (an encoder-decoder assistant encodes them itself).
    """
    check_assisted(model, generation_config, input_ids.shape[0], assistant_model)
    device = input_ids.device
    prompt_length = input_ids.shape[1]
    max_length = int(settings.max_length)
    do_sample = bool(settings.do_sample)
    hf_exact = do_sample and getattr(settings, "sampling_backend", "philox") == "hf_exact"
    generator = getattr(settings, "generator", None)
    seed = None
    if do_sample and not hf_exact:
        seed = request_seeds(1, device, getattr(settings, "seed", None), generator)
    eos = getattr(generation_config, "_eos_token_tensor", None)
    if eos is None and getattr(generation_config, "eos_token_id", None) is not None:
        eos = torch.as_tensor(generation_config.eos_token_id, dtype=torch.int64).reshape(-1)
    if eos is not None:
        eos = eos.to(device=device, dtype=torch.int64).reshape(-1)

    lookup = getattr(generation_config, "prompt_lookup_num_tokens", None)
    if lookup is not None:
        vocab = _text_vocab(model)
        candidate_generator: Any = PromptLookupCandidateGenerator(
            eos, lookup, getattr(generation_config, "max_matching_ngram_size", None) or 2, max_length, plan, vocab
        )
    else:
        candidate_generator = AssistantCandidateGenerator(
            assistant_model, model_kwargs, plan, eos_token_id=eos, max_length=max_length,
            prompt_length=prompt_length, do_sample=do_sample, seed=seed, hf_exact=hf_exact, generator=generator,
            inputs_tensor=inputs_tensor,
        )
    target = _Stepper(model, model_kwargs)

    scores: Optional[tuple] = () if settings.output_scores else None
    raw_logits: Optional[tuple] = () if settings.output_logits else None
    while True:
        cur_len = input_ids.shape[1]
        candidates, draft_scores = candidate_generator.get_candidates(input_ids)
        k = candidates.shape[1]
        candidate_ids = torch.cat([input_ids, candidates.to(device)], dim=1)
        new_logits = target.logits(candidate_ids, k + 1)  # (1, k + 1, V) float32
        generated = cur_len - prompt_length

        if do_sample and draft_scores is not None:
            processed = torch.stack(
                [plan.process(candidate_ids[:, : cur_len + i], new_logits[:, i]) for i in range(k + 1)], dim=1
            )
            draft_scores = draft_scores.to(device)
            if hf_exact:
                valid, n = _speculative_hf(candidates, draft_scores, processed, generator)
            else:
                valid, n = _speculative_philox(candidates, draft_scores, processed, seed, generated)
        elif hf_exact:
            processed = torch.stack(
                [plan.process(candidate_ids[:, : cur_len + i], new_logits[:, i]) for i in range(k + 1)], dim=1
            )
            selected = torch.multinomial(processed[0].softmax(-1), 1, generator=generator)[:, 0][None, :]
            n = _first_rejection(candidates[0] == selected[0, :k])
            valid = selected[:, : n + 1]
        else:
            # Greedy, or Philox sampling at each position (the draw plain sampling makes there);
            # a position is only needed while every candidate before it was accepted.
            chosen, rows = [], []
            n = 0
            for i in range(k + 1):
                offset = None
                if do_sample:
                    offset = torch.full((1,), generated + i, dtype=torch.int64, device=device)
                token, row = plan.next_tokens(candidate_ids[:, : cur_len + i], new_logits[:, i], seed, offset, True)
                chosen.append(token)
                rows.append(row)
                if i == k or int(token[0]) != int(candidates[0, i]):
                    break
                n += 1
            valid = torch.stack(chosen, dim=1)
            processed = torch.stack(rows, dim=1)

        # Cut at the length budget and after the first EOS (transformers' order).
        valid = valid[:, : max(0, max_length - cur_len)]
        if eos is not None:
            hits = torch.isin(valid[0], eos).nonzero()
            if hits.numel():
                valid = valid[:, : int(hits[0, 0]) + 1]
        n = valid.shape[1] - 1

        input_ids = torch.cat([input_ids, valid], dim=1)
        if streamer is not None:
            streamer.put(valid.cpu())
        target.crop(input_ids.shape[1] - 1)
        candidate_generator.update(k, n)
        if scores is not None:
            scores += tuple(processed[:, i] for i in range(n + 1))
        if raw_logits is not None:
            raw_logits += tuple(new_logits[:, i].clone() for i in range(n + 1))
        done = stopping_criteria(input_ids, scores)
        if bool(torch.as_tensor(done).all()):
            break

    if hasattr(candidate_generator, "finish"):
        candidate_generator.finish()
    if streamer is not None:
        streamer.end()
    mask_key = target.mask_key
    _fit_mask(model_kwargs, mask_key, input_ids.shape[1])
    if not settings.return_dict:
        return input_ids
    return output_object(
        encoder_decoder=settings.is_encoder_decoder, sequences=input_ids, scores=scores, logits=raw_logits,
        cache=target.cache,
    )


def assisted_decoding(
    model: Any,
    input_ids: torch.Tensor,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    synced_gpus: bool = False,
    streamer: Any = None,
    inputs_tensor: Optional[torch.Tensor] = None,
    assistant_model: Any = None,
    assistant_tokenizer: Any = None,
    tokenizer: Any = None,
    sampling_backend: str = "philox",
    generator: Optional[torch.Generator] = None,
    seed: Any = None,
    **model_kwargs: Any,
) -> Any:
    """transformers' ``_assisted_decoding`` calling convention (what :func:`pydecode.generate` dispatches
    to), run by :func:`assisted_decode` with a processor plan built from ``logits_processor``.

    ``sampling_backend`` / ``generator`` / ``seed`` are :func:`pydecode.generate`'s options.
    """
    from . import components
    from .scheduler import DecodeSettings, check_sampling_options

    if synced_gpus:
        raise ValueError("synced_gpus=True is not supported by pydecode")
    if assistant_tokenizer is not None:
        raise ValueError(
            "pydecode's assisted decoding needs an assistant with the main model's tokenizer; universal assisted "
            "decoding (assistant_tokenizer=...) is not supported"
        )
    check_sampling_options(sampling_backend, seed, generator)
    check_assisted(model, generation_config, input_ids.shape[0], assistant_model)
    strategy = "sample" if generation_config.do_sample else "greedy"
    plan = components.make_plan(logits_processor, generation_config, strategy)
    is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    settings = DecodeSettings.from_config(
        generation_config, is_encoder_decoder=is_encoder_decoder, sampling_backend=sampling_backend,
        generator=generator, seed=seed,
    )
    return assisted_decode(
        model, input_ids, plan, stopping_criteria, settings, generation_config=generation_config,
        model_kwargs=model_kwargs, assistant_model=assistant_model, streamer=streamer,
        encoder_outputs=model_kwargs.get("encoder_outputs"), inputs_tensor=inputs_tensor,
    )
