"""The processor plan: a logits-processor list turned, once per ``generate`` call, into few fused op calls.

``plan = build_plan(processors, generation_config, strategy=...)`` walks the list (transformers' order, as
:func:`~pydecode.generation.processors.build_logits_processor_list` builds it) and groups it into stages:

* **penalties**: a pydecode ``RepetitionPenaltyLogitsProcessor`` followed by a presence or frequency
  penalty becomes one ``ops.apply_penalties`` call. Under greedy / sample decoding the stage keeps an
  ``ops.PenaltyState`` (distinct history tokens and counts) and applies it in O(distinct tokens) per row
  (``ops.apply_penalties_from_state``) when the new ``input_ids`` is the previous one plus one column, which
  it checks every step (``torch.equal`` on the ids); anything else rebuilds the state from ``input_ids``.
  Presence and frequency together stay two stages: one fused subtraction would round differently from
  the two processors applied in turn.
* **sampling tail**: pydecode ``Temperature -> TopK -> TopP -> MinP`` warpers (any subset, in that order,
  one ``min_tokens_to_keep``, filter value -inf) become one ``ops.filter_and_sample`` call. When the tail
  ends the list and the strategy samples, ``next_tokens`` filters and samples in that one call and writes
  no processed-scores tensor unless asked for (``need_scores``).
* **processor**: everything else (the other pydecode processors, which call their own op, and any user
  or transformers processor) runs unchanged, in its position.

Every stage returns exactly what its processors return in sequence (tested against transformers' list),
so ``plan.process(input_ids, scores)`` equals ``processors(input_ids, scores)`` bit for bit, and state never
changes a result: it is only a faster way to the same numbers. ``plan.describe()`` lists the stages.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Union

import torch

from .. import ops
from . import processors as P

__all__ = ["ProcessorPlan", "build_plan"]

STRATEGIES = ("greedy", "sample", "beam", "beam_sample")
_NEG_INF = -float("inf")


def _kind(processor: Any, cls: type) -> bool:
    """Exactly a pydecode class (a subclass may change ``__call__``, so it is not fused)."""
    return type(processor) is cls


class _Stage:
    """One step of the plan: ``stage(input_ids, scores) -> scores``."""

    name = "stage"

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop any state kept across steps."""


class _ProcessorStage(_Stage):
    """A processor run as transformers' ``LogitsProcessorList`` runs it (no extra keyword arguments here)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.name = f"processor:{type(processor).__name__}"
        parameters = list(inspect.signature(processor.__call__).parameters)
        self._extra = parameters[2:]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._extra:
            raise ValueError(
                f"Make sure that all the required parameters: {self._extra} for {type(self.processor)} are passed "
                "to the logits processor (the plan passes none)."
            )
        return self.processor(input_ids, scores)


class _PenaltyStage(_Stage):
    """Repetition penalty (optional) then one presence or frequency penalty (optional), in one op call."""

    def __init__(
        self,
        repetition: Optional[P.RepetitionPenaltyLogitsProcessor],
        generated: Optional[P._GeneratedTokensPenalty],
        use_state: bool,
    ) -> None:
        self.repetition = repetition
        self.generated = generated
        self.use_state = use_state
        parts = []
        if repetition is not None:
            parts.append("repetition")
        if generated is not None:
            parts.append("presence" if isinstance(generated, P.PresencePenaltyLogitsProcessor) else "frequency")
        self.name = f"apply_penalties({', '.join(parts)}{', state' if use_state else ''})"
        self.state: Optional[ops.PenaltyState] = None
        self._seen: Optional[torch.Tensor] = None
        self._builds = 0

    # A caller whose ids are not "previous ids plus one column" (assisted decoding re-scores candidate
    # prefixes) would rebuild the state every call; after this many builds the stage goes stateless.
    MAX_BUILDS = 3

    def reset(self) -> None:
        self.state = None
        self._seen = None

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.repetition is not None:
            kwargs["repetition_penalty"] = self.repetition.penalty
        if isinstance(self.generated, P.PresencePenaltyLogitsProcessor):
            kwargs["presence_penalty"] = self.generated.penalty
        elif self.generated is not None:
            kwargs["frequency_penalty"] = self.generated.penalty
        return kwargs

    def _ignore(self, input_ids: torch.Tensor) -> Union[int, torch.Tensor, None]:
        return None if self.repetition is None else self.repetition._ignore_length(input_ids)

    def _prompt_length(self, input_ids: torch.Tensor) -> int:
        length = input_ids.shape[1] if self.generated is None else self.generated.prompt_length
        return min(length, input_ids.shape[1])

    def _stateless(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        output_ids = None if self.generated is None else input_ids[:, self.generated.prompt_length :]
        # "ignore" (here and in the state): transformers' repetition penalty drops ids >= vocab, and finished
        # rows feed pad_token_id to presence/frequency, which need not be an id the lm_head can emit.
        return ops.apply_penalties(
            scores, input_ids, output_ids, prompt_ignore_length=self._ignore(input_ids), out_of_vocab="ignore",
            **self._kwargs(),
        )

    def _current_state(self, input_ids: torch.Tensor, vocab: int) -> ops.PenaltyState:
        seen, state = self._seen, self.state
        if state is not None and seen is not None and state.vocab_size == vocab and seen.shape[0] == input_ids.shape[0]:
            grown = input_ids.shape[1] - seen.shape[1]
            # A buffer grown in place would compare equal to itself: only a new tensor can be checked.
            fresh = input_ids.untyped_storage().data_ptr() != seen.untyped_storage().data_ptr()
            if grown == 0 and (input_ids is seen or (fresh and torch.equal(input_ids, seen))):
                return state
            if grown == 1 and fresh and torch.equal(input_ids[:, :-1], seen):
                state.update(input_ids[:, -1])
                self._seen = input_ids
                return state
        self._builds += 1
        prompt = self._prompt_length(input_ids)
        state = ops.PenaltyState(
            input_ids[:, :prompt], vocab, prompt_ignore_length=self._ignore(input_ids), out_of_vocab="ignore"
        )
        for column in range(prompt, input_ids.shape[1]):
            state.update(input_ids[:, column])
        self.state, self._seen = state, input_ids
        return state

    def state_for(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Optional[ops.PenaltyState]:
        """The state this call would apply (the fused sampling tail applies it itself), or None
        when this call runs stateless."""
        if not self.use_state or self._builds >= self.MAX_BUILDS or input_ids.dim() != 2:
            return None
        return self._current_state(input_ids, scores.shape[1])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        P._check_2d(scores, "the penalties")
        if input_ids.dim() == 1:
            input_ids = input_ids[:, None]
        state = self.state_for(input_ids, scores)
        if state is None:
            if self.state is not None:
                self.reset()
            return P._cast_back(self._stateless(input_ids, scores), scores)
        return P._cast_back(ops.apply_penalties_from_state(scores, state, **self._kwargs()), scores)


class _SamplingTail(_Stage):
    """pydecode's Temperature -> TopK -> TopP -> MinP warpers (a subset, that order) as ``filter_and_sample``."""

    def __init__(self, warpers: list[Any]) -> None:
        self.warpers = warpers
        self.temperature: Optional[float] = None
        self.top_k: Optional[int] = None
        self.top_p: Optional[float] = None
        self.min_p: Optional[float] = None
        self.min_tokens_to_keep = 1
        names = []
        for warper in warpers:
            if isinstance(warper, P.TemperatureLogitsWarper):
                self.temperature = warper.temperature
                names.append("temperature")
                continue
            self.min_tokens_to_keep = warper.min_tokens_to_keep
            if isinstance(warper, P.TopKLogitsWarper):
                # The warper's k already includes min_tokens_to_keep; it is clamped to the vocabulary per call.
                self.top_k = warper.top_k
                names.append("top_k")
            elif isinstance(warper, P.TopPLogitsWarper):
                self.top_p = warper.top_p
                names.append("top_p")
            else:
                self.min_p = float(warper.min_p)
                names.append("min_p")
        self.name = f"filter_and_sample({', '.join(names)})"

    def run(
        self,
        scores: torch.Tensor,
        seed: Any,
        offset: Any,
        *,
        tokens_wanted: bool,
        filtered_wanted: bool,
        penalties: Optional[tuple[ops.PenaltyState, dict]] = None,
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``penalties``: a penalty stage's (state, penalty kwargs) to apply first, in the same op."""
        top_k = None if self.top_k is None else min(self.top_k, scores.shape[-1])  # the ops refuse k > vocab
        kwargs = dict(
            temperature=self.temperature,
            top_k=top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            min_tokens_to_keep=self.min_tokens_to_keep,
            seed=0 if seed is None and not tokens_wanted else seed,
            offset=0 if offset is None else offset,
            return_filtered=filtered_wanted,
        )
        if penalties is None:
            out = ops.filter_and_sample(scores, **kwargs)
        else:
            out = ops.filter_and_sample_from_state(scores, penalties[0], **penalties[1], **kwargs)
        filtered = None if out.filtered is None else P._cast_back(out.filtered, scores)
        return (out.tokens if tokens_wanted else None), filtered

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        P._check_2d(scores, "the sampling warpers")
        _, filtered = self.run(scores, 0, 0, tokens_wanted=False, filtered_wanted=True)
        assert filtered is not None
        return filtered


_TAIL_ORDER = (P.TemperatureLogitsWarper, P.TopKLogitsWarper, P.TopPLogitsWarper, P.MinPLogitsWarper)


def _tail_rank(processor: Any) -> Optional[int]:
    """Position of a fusable warper in the tail order, None when it cannot join a tail."""
    for rank, cls in enumerate(_TAIL_ORDER):
        if _kind(processor, cls):
            if rank == 0:
                return rank
            if processor.filter_value != _NEG_INF:
                return None  # filter_and_sample writes -inf
            if cls is P.TopPLogitsWarper and processor.top_p >= 1.0:
                return None  # the op treats 1 as "off"; the class still drops zero-probability tokens
            return rank
    return None


def _group_tails(processors: list[Any]) -> list[Union[_Stage, Any]]:
    """Runs of tail warpers (increasing order, one min_tokens_to_keep) become _SamplingTail stages."""
    out: list[Union[_Stage, Any]] = []
    run: list[Any] = []

    def flush() -> None:
        if run:
            out.append(_SamplingTail(list(run)))
            run.clear()

    for processor in processors:
        rank = _tail_rank(processor)
        if rank is None:
            flush()
            out.append(processor)
            continue
        last_rank = _tail_rank(run[-1]) if run else -1
        keeps = {w.min_tokens_to_keep for w in run if not _kind(w, P.TemperatureLogitsWarper)}
        same_keep = rank == 0 or not keeps or keeps == {processor.min_tokens_to_keep}
        if run and (rank <= last_rank or not same_keep):  # type: ignore[operator]
            flush()
        run.append(processor)
    flush()
    return out


def _group_penalties(items: list[Union[_Stage, Any]], use_state: bool) -> list[_Stage]:
    stages: list[_Stage] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, _Stage):
            stages.append(item)
            i += 1
            continue
        repetition = item if _kind(item, P.RepetitionPenaltyLogitsProcessor) else None
        start = i + 1 if repetition is not None else i
        nxt = items[start] if start < len(items) else None
        generated = (
            nxt
            if _kind(nxt, P.PresencePenaltyLogitsProcessor) or _kind(nxt, P.FrequencyPenaltyLogitsProcessor)
            else None
        )
        if repetition is None and generated is None:
            stages.append(_ProcessorStage(item))
            i += 1
            continue
        stages.append(_PenaltyStage(repetition, generated, use_state))
        i = start + (1 if generated is not None else 0)
    return stages


class ProcessorPlan:
    """The stages of one ``generate`` call; see the module docstring.

    Attributes: ``strategy``, ``stages`` (list), ``processors`` (the list it was built from).
    """

    def __init__(self, processors: list[Any], strategy: str, *, use_penalty_state: Optional[bool] = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy = strategy
        self.processors = list(processors)
        if use_penalty_state is None:
            # Beams are reordered every step: the state would be rebuilt each time, so beams go stateless.
            use_penalty_state = strategy in ("greedy", "sample")
        self.stages = _group_penalties(_group_tails(self.processors), use_penalty_state)
        last = self.stages[-1] if self.stages else None
        self._fused_tail = last if isinstance(last, _SamplingTail) and strategy == "sample" else None
        # A penalty stage right before the fused tail joins it (filter_and_sample_from_state).
        before = self.stages[-2] if self._fused_tail is not None and len(self.stages) > 1 else None
        self._fused_penalties = before if isinstance(before, _PenaltyStage) else None

    def describe(self) -> list[str]:
        """The stages, in order (e.g. ``["apply_penalties(repetition, state)", "filter_and_sample(top_k, top_p)"]``)."""
        return [stage.name for stage in self.stages]

    def _run(self, stages: list[_Stage], input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for stage in stages:
            scores = stage(input_ids, scores)
        return scores

    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """What the processor list returns for ``(input_ids, scores)`` (float32 ``(batch, vocab)`` in generate)."""
        return self._run(self.stages, input_ids, scores)

    def next_tokens(
        self,
        input_ids: torch.Tensor,
        scores: torch.Tensor,
        seed: Any = None,
        offset: Any = None,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The next token of every row, and the processed scores when ``need_scores``.

        greedy: ``argmax`` of the processed scores (``torch.argmax``, as transformers). sample: the
        randomness contract of :mod:`pydecode.ops` (Philox Gumbel-max over the processed scores' support)
        with ``seed`` / ``offset`` (ints or int64 ``(batch,)``; offset = tokens generated so far by the row).
        """
        if self.strategy == "greedy":
            processed = self.process(input_ids, scores)
            return torch.argmax(processed, dim=-1), (processed if need_scores else None)
        if self.strategy != "sample":
            raise ValueError(f"next_tokens is for the greedy and sample strategies, this plan is {self.strategy!r}")
        if self._fused_tail is not None:
            tail = self._fused_tail
            penalty = self._fused_penalties
            if penalty is not None:
                before = self._run(self.stages[:-2], input_ids, scores)
                # float32 only: the stage casts its output back to the scores' dtype, the fused op does not.
                state = penalty.state_for(input_ids, before) if before.dtype == torch.float32 else None
                if state is not None:
                    tokens, filtered = tail.run(before, seed, offset, tokens_wanted=True, filtered_wanted=need_scores,
                                                penalties=(state, penalty._kwargs()))
                    assert tokens is not None
                    return tokens, filtered
                before = penalty(input_ids, before)  # stateless this call
            else:
                before = self._run(self.stages[:-1], input_ids, scores)
            tokens, filtered = tail.run(before, seed, offset, tokens_wanted=True, filtered_wanted=need_scores)
            assert tokens is not None
            return tokens, filtered
        processed = self.process(input_ids, scores)
        return ops.filter_and_sample(processed, seed=seed, offset=0 if offset is None else offset).tokens, (
            processed if need_scores else None
        )

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Beams were reordered: drop the per-row state (it is rebuilt from ``input_ids`` when next needed)."""
        for stage in self.stages:
            stage.reset()


def build_plan(
    processors: Any,
    generation_config: Any = None,
    *,
    strategy: str,
    use_penalty_state: Optional[bool] = None,
) -> ProcessorPlan:
    """Build the plan of one ``generate`` call.

    Args:
        processors: the processor list (``build_logits_processor_list``'s, possibly with user processors; any
            callables ``(input_ids, scores) -> scores``), or None for none.
        generation_config: the call's config (kept for future per-config choices; the list already holds
            every setting).
        strategy: "greedy" | "sample" | "beam" | "beam_sample".
        use_penalty_state: keep a PenaltyState across steps (default: for greedy and sample).
    """
    return ProcessorPlan([] if processors is None else list(processors), strategy, use_penalty_state=use_penalty_state)
