"""The decoding loop for greedy search and multinomial sampling.

One step: model logits (float32) -> ``plan.next_tokens`` (processors + argmax, or processors +
Philox sampling fused into ``pydecode.ops``) -> pad finished rows -> stopping -> streamer.
The order of everything observable (processors called with the full ``input_ids``, scores
and logits recorded before the token is chosen, finished rows padded, the streamer fed after
the stop check) is transformers 5.24's ``_sample``, so greedy ids are identical.

Sampling backends (``sampling_backend=``):

* ``"philox"`` (default): pydecode's randomness contract. Each row gets a 64-bit request seed,
  drawn once per call from ``generator=`` or torch's global RNG (so ``torch.manual_seed``
  reproduces a call), or given as ``seed=`` (an int for every row, or a ``(rows,)`` int64
  tensor); the token of step ``t`` depends only on (seed, t, the row's logits).
* ``"hf_exact"``: ``torch.multinomial(softmax(processed), 1)`` exactly as transformers draws,
  so ids equal transformers' under the same ``torch.manual_seed`` (or ``generator=``).

Stopping without per-step criteria calls: when the stopping list holds only max-length and EOS
criteria (transformers' or pydecode's), the loop evaluates them itself (one compare against the
EOS ids instead of ``torch.isin`` and a full-batch tensor per criterion). On a GPU it reads the
"all finished" flag only every ``SYNC_EVERY`` steps and drops the few extra steps afterwards,
so the host does not wait for the device at every token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .. import ops
from .outputs import output_object

__all__ = ["DecodeSettings", "StopRule", "decode", "request_seeds"]


SAMPLING_BACKENDS = ("philox", "hf_exact")
# Steps between host reads of the "all rows finished" flag on accelerators. Each extra step
# after the batch finished costs one forward; 4 keeps that under a few % of a 64-token call.
SYNC_EVERY = 4
# On CPU the flag is already on the host: read it every step (tests raise this to exercise
# the deferred path).
SYNC_EVERY_CPU = 1
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class DecodeSettings:
    """What the loop needs from the generation config, resolved once per call."""

    max_length: int
    pad_token_id: Optional[torch.Tensor] = None
    do_sample: bool = False
    return_dict: bool = False
    output_scores: bool = False
    output_logits: bool = False
    output_attentions: bool = False
    output_hidden_states: bool = False
    sampling_backend: str = "philox"
    generator: Optional[torch.Generator] = None
    seed: Any = None
    is_encoder_decoder: bool = False
    sync_every: Optional[int] = None
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, generation_config: Any, *, is_encoder_decoder: bool = False, **extra: Any) -> DecodeSettings:
        rd = bool(generation_config.return_dict_in_generate)
        pad = getattr(generation_config, "_pad_token_tensor", None)
        if pad is None and generation_config.pad_token_id is not None:
            pad = torch.tensor(generation_config.pad_token_id)
        return cls(
            max_length=int(generation_config.max_length),
            pad_token_id=pad,
            do_sample=bool(generation_config.do_sample),
            return_dict=rd,
            output_scores=rd and bool(generation_config.output_scores),
            output_logits=rd and bool(generation_config.output_logits),
            output_attentions=rd and bool(generation_config.output_attentions),
            output_hidden_states=rd and bool(generation_config.output_hidden_states),
            is_encoder_decoder=is_encoder_decoder,
            **extra,
        )


def check_sampling_options(sampling_backend: Any, seed: Any, generator: Any) -> None:
    if sampling_backend not in SAMPLING_BACKENDS:
        raise ValueError(f"sampling_backend must be one of {SAMPLING_BACKENDS}, got {sampling_backend!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        if sampling_backend == "hf_exact":
            raise ValueError(
                "seed= applies to sampling_backend='philox'; for 'hf_exact' use torch.manual_seed or generator="
            )
        if generator is not None:
            raise ValueError("pass either seed= or generator=, not both")
        if isinstance(seed, bool) or not isinstance(seed, (int, torch.Tensor)):
            raise TypeError(f"seed must be an int or an int64 tensor of per-row seeds, got {type(seed).__name__}")


def request_seeds(rows: int, device: torch.device, seed: Any = None, generator: Optional[torch.Generator] = None):
    """Per-row int64 request seeds ``(rows,)`` (the randomness contract).

    ``seed`` int: row ``i`` gets ``seed + i`` (rows of one call differ, a rerun is identical);
    ``seed`` tensor ``(rows,)``: used as is (a request keeps its seed whatever its row);
    neither: ``rows`` seeds drawn once from ``generator`` or torch's global RNG.
    """
    if isinstance(seed, torch.Tensor):
        if seed.dtype not in (torch.int64, torch.int32) or seed.shape != (rows,):
            raise ValueError(f"seed tensor must be int64 of shape ({rows},) (one per output row), got "
                             f"{seed.dtype} {tuple(seed.shape)}")
        return seed.to(device=device, dtype=torch.int64)
    if isinstance(seed, int):
        return (torch.arange(rows, dtype=torch.int64) + seed).to(device)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    drawn = torch.randint(_INT64[0], _INT64[1], (rows,), generator=generator, dtype=torch.int64, device=gen_device)
    return drawn.to(device)


class StopRule:
    """The stopping criteria list, evaluated inline when it holds only max-length / EOS criteria."""

    def __init__(self, stopping_criteria: Any, device: torch.device) -> None:
        self.criteria = stopping_criteria
        crits = list(stopping_criteria) if stopping_criteria is not None else []
        self.has_eos = any(hasattr(c, "eos_token_id") for c in crits)
        names = {type(c).__name__ for c in crits}
        self.fast = names <= {"MaxLengthCriteria", "EosTokenCriteria"}
        lengths = [int(c.max_length) for c in crits if type(c).__name__ == "MaxLengthCriteria"]
        self.max_length = min(lengths) if lengths else None
        eos = [torch.as_tensor(c.eos_token_id).reshape(-1) for c in crits if type(c).__name__ == "EosTokenCriteria"]
        self.eos = torch.cat(eos).to(device=device, dtype=torch.int64) if eos else None
        if self.fast and self.max_length is None and self.eos is None:
            self.fast = False  # nothing to evaluate inline; keep the list's own behaviour

    def __call__(self, input_ids: torch.Tensor, scores: Any, new_tokens: torch.Tensor) -> torch.Tensor:
        """``(rows,)`` bool: which rows the criteria stop (``new_tokens`` = the last column)."""
        if not self.fast:
            return self.criteria(input_ids, scores)
        if self.max_length is not None and input_ids.shape[1] >= self.max_length:
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.eos is None:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.eos.numel() == 1:
            return new_tokens == self.eos[0]
        return (new_tokens[:, None] == self.eos).any(dim=-1)


def _argmax(scores: torch.Tensor) -> torch.Tensor:
    """``torch.argmax(scores, -1)`` (transformers' greedy choice, NaN and ties included).

    On CPU ``pydecode.ops.argmax`` (same indices) runs the cpu kernel: 8 x 32000 float32 in
    23-40 us against ~185 us for ``torch.max(dim)`` and ~540 us for ``torch.argmax`` (README).
    A requested GPU backend (triton, cuda) has no argmax kernel: torch's then.
    """
    if scores.device.type == "cpu" and ops.get_backend() in (None, "cpu"):
        return ops.argmax(scores)
    return torch.argmax(scores, dim=-1)


def _encoder_field(encoder_outputs: Any, name: str, wanted: bool) -> Any:
    return encoder_outputs.get(name) if wanted and encoder_outputs is not None else None


def decode(
    runner: Any,
    input_ids: torch.Tensor,
    plan: Any,
    stop: StopRule,
    settings: DecodeSettings,
    *,
    streamer: Any = None,
    encoder_outputs: Any = None,
) -> Any:
    """Greedy or sampling loop; returns ``sequences`` or a transformers output object."""
    rows = input_ids.shape[0]
    device = input_ids.device
    prompt_len = input_ids.shape[1]
    sample = settings.do_sample
    hf_exact = sample and settings.sampling_backend == "hf_exact"
    seeds = request_seeds(rows, device, settings.seed, settings.generator) if sample and not hf_exact else None
    steps_arange = None
    pad = settings.pad_token_id.to(device) if settings.pad_token_id is not None else None
    if stop.has_eos and pad is None:
        raise ValueError("pad_token_id must be set when an EOS stopping criterion is used (finished rows are padded)")

    scores: Optional[tuple] = () if settings.output_scores else None
    raw_logits: Optional[tuple] = () if settings.output_logits else None
    attentions: Optional[tuple] = () if settings.output_attentions else None
    cross_attentions: Optional[tuple] = () if settings.output_attentions and settings.is_encoder_decoder else None
    hidden: Optional[tuple] = () if settings.output_hidden_states else None

    sync_every = settings.sync_every or (SYNC_EVERY_CPU if device.type == "cpu" else SYNC_EVERY)
    if streamer is not None or not stop.fast:
        sync_every = 1  # the streamer and user criteria need host values every step anyway
    done_len = torch.full((), -1, dtype=torch.int64, device=device) if sync_every > 1 else None

    unfinished = torch.ones(rows, dtype=torch.long, device=device)
    logits = runner.prefill(input_ids)
    step = 0
    while True:
        if step:
            logits = runner.step(input_ids)
        if raw_logits is not None:
            raw_logits += (logits.clone(),)
        if hf_exact:
            processed = plan.process(input_ids, logits)
            probs = torch.nn.functional.softmax(processed, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=settings.generator).squeeze(1)
        else:
            offset = None
            if sample:
                # offset = tokens generated so far for the row (the randomness contract).
                if steps_arange is None:
                    steps_arange = torch.zeros(rows, dtype=torch.int64, device=device)
                offset = steps_arange + step
            if sample:
                next_tokens, processed = plan.next_tokens(input_ids, logits, seeds, offset, settings.output_scores)
            else:
                processed = plan.process(input_ids, logits)
                next_tokens = _argmax(processed)
        if scores is not None:
            scores += (processed,)
        if attentions is not None:
            self_att, cross_att = runner.attentions()
            attentions += (self_att,)
            if cross_attentions is not None:
                cross_attentions += (cross_att,)
        if hidden is not None:
            hidden += (runner.hidden_states(),)

        if stop.has_eos:
            next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        unfinished = unfinished & ~stop(input_ids, scores, next_tokens)
        step += 1
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        cur_len = input_ids.shape[1]
        if sync_every == 1:
            if unfinished.max() == 0:
                break
            continue
        # Deferred check: record on the device when the batch finished, read it now and then.
        done_len = torch.where((done_len < 0) & (unfinished.max() == 0), cur_len, done_len)
        at_max = stop.max_length is not None and cur_len >= stop.max_length
        if at_max or step % sync_every == 0:
            finished_at = int(done_len)
            if finished_at >= 0 or at_max:
                if finished_at >= 0 and finished_at < cur_len:
                    keep = finished_at - prompt_len
                    input_ids = input_ids[:, :finished_at]
                    scores = scores[:keep] if scores is not None else None
                    raw_logits = raw_logits[:keep] if raw_logits is not None else None
                    attentions = attentions[:keep] if attentions is not None else None
                    cross_attentions = cross_attentions[:keep] if cross_attentions is not None else None
                    hidden = hidden[:keep] if hidden is not None else None
                    # The last kept token was never fed to the model.
                    runner.crop_cache(finished_at - 1)
                break

    if streamer is not None:
        streamer.end()
    if not settings.return_dict:
        return input_ids
    return output_object(
        encoder_decoder=settings.is_encoder_decoder, sequences=input_ids, scores=scores, logits=raw_logits,
        cache=runner.cache, attentions=attentions, cross_attentions=cross_attentions, hidden_states=hidden,
        encoder_attentions=_encoder_field(encoder_outputs, "attentions", settings.output_attentions),
        encoder_hidden_states=_encoder_field(encoder_outputs, "hidden_states", settings.output_hidden_states),
    )
