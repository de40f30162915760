"""Where the scheduler gets its logits processors, processor plan and stopping criteria.

One seam, so the scheduler does not care which module provides them: pydecode's
``processors.build_logits_processor_list`` / ``plan.build_plan`` and
``stopping.build_stopping_criteria`` when present, else transformers' own builders on the model
(``_get_logits_processor`` / ``_get_stopping_criteria``) and a plain plan that runs the list.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["build_processors", "build_stopping", "make_plan"]


def build_processors(model: Any, generation_config: Any, **kwargs: Any) -> Any:
    """The logits processor list transformers' ``_get_logits_processor`` would build (pydecode classes)."""
    try:
        from .processors import build_logits_processor_list
    except ImportError:
        build_logits_processor_list = None
    if build_logits_processor_list is not None:
        return build_logits_processor_list(generation_config, model=model, **kwargs)
    if model is None:
        raise RuntimeError("pydecode.generation.processors is not available and there is no transformers model")
    return model._get_logits_processor(generation_config=generation_config, **kwargs)


def build_stopping(model: Any, generation_config: Any, stopping_criteria: Any = None, tokenizer: Any = None) -> Any:
    """The stopping criteria list transformers' ``_get_stopping_criteria`` would build."""
    try:
        from .stopping import build_stopping_criteria
    except ImportError:
        build_stopping_criteria = None
    if build_stopping_criteria is not None:
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        return build_stopping_criteria(
            generation_config, stopping_criteria=stopping_criteria, tokenizer=tokenizer,
            max_position_embeddings=positions,
        )
    if model is None:
        raise RuntimeError("pydecode.generation.stopping is not available and there is no transformers model")
    from transformers.generation.stopping_criteria import StoppingCriteriaList

    return model._get_stopping_criteria(
        generation_config=generation_config,
        stopping_criteria=stopping_criteria if stopping_criteria is not None else StoppingCriteriaList(),
        tokenizer=tokenizer,
    )


class _ListPlan:
    """Fallback plan: run the processor list as transformers does; argmax / Philox sample."""

    def __init__(self, processors: Any, strategy: str) -> None:
        self.processors = processors
        self.strategy = strategy

    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.processors(input_ids, scores) if self.processors else scores

    def next_tokens(
        self,
        input_ids: torch.Tensor,
        scores: torch.Tensor,
        seed: Optional[torch.Tensor],
        offset: Optional[torch.Tensor],
        need_scores: bool,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        from .. import ops

        processed = self.process(input_ids, scores)
        if self.strategy == "greedy":
            tokens = torch.argmax(processed, dim=-1)
        else:
            tokens = ops.sampling_from_logits(processed, seed=seed, offset=offset)
        return tokens, (processed if need_scores else None)

    def reorder(self, beam_idx: torch.Tensor) -> None:
        return None


def make_plan(processors: Any, generation_config: Any, strategy: str) -> Any:
    """``plan.build_plan(processors, generation_config, strategy=...)`` or the fallback plan."""
    try:
        from .plan import build_plan
    except ImportError:
        build_plan = None
    if build_plan is not None:
        return build_plan(processors, generation_config, strategy=strategy)
    return _ListPlan(processors, strategy)
