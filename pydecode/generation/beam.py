"""Beam search and beam sampling.

The hypothesis bookkeeping follows transformers 5.24's ``_beam_search`` step for step (its
vectorised formulation: running beams, a static-shaped store of the best finished beams,
``-1e9`` masks), because identical ids and scores require identical tie-breaking and float
order: candidates are the top ``max(2, 1 + n_eos) * num_beams`` of ``log_softmax(logits)`` (after
the processors) plus the running beam scores; candidates that hit a stopping criterion are
finished (length penalty ``score / gen_len ** length_penalty``, gen_len counting the EOS); the
best ``num_beams`` unfinished ones continue; ``early_stopping`` True / False (heuristic) /
"never" decides when a batch item is done.

What is pydecode's: the candidate selection is one ``pydecode.ops.beam_topk`` call (fused
log-softmax + beam score + two-stage top-k, ties to the lowest flat index like transformers'
``torch.topk``), the stop checks are evaluated inline (see :class:`scheduler.StopRule`), and beam
sampling draws its candidates either as transformers does (``sampling_backend="hf_exact"``:
``torch.multinomial`` without replacement) or with the Philox contract (Gumbel-top-k: the top
``k`` of ``log_probs + Gumbel noise`` is a sample without replacement from ``softmax(log_probs)``).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from .. import ops
from .outputs import output_object
from .scheduler import DecodeSettings, StopRule, _encoder_field, request_seeds

__all__ = ["beam_search"]

_NEG = -1.0e9  # transformers' "impossible" score offset


def _gather_beams(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tensor[b, indices[b, j], ...]`` for (batch, beams, ...) tensors."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


def _sample_candidates(
    accumulated: torch.Tensor, k: int, hf_exact: bool, generator: Optional[torch.Generator],
    seeds: Optional[torch.Tensor], step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` candidates per batch item sampled without replacement from ``softmax(accumulated)``,
    sorted by score descending (transformers' order): (scores, flat indices)."""
    if hf_exact:
        picked = torch.multinomial(torch.softmax(accumulated, dim=-1), num_samples=k, generator=generator)
    else:
        # Gumbel-top-k (Kool et al. 2019): the top k of logp + Gumbel noise is distributed as k
        # draws without replacement. Noise from the Philox contract: (seed, step, flat index).
        rows, width = accumulated.shape
        u = ops.philox_uniform(seeds, torch.full((rows,), step, dtype=torch.int64, device=accumulated.device),
                               width, batch=rows, device=accumulated.device)
        gumbel = -torch.log(-torch.log(u))
        noisy = torch.where(accumulated > float("-inf"), accumulated + gumbel, accumulated)
        picked = torch.topk(noisy, k, dim=-1).indices
    picked_scores = accumulated.gather(1, picked)
    picked_scores, order = picked_scores.sort(dim=-1, descending=True)
    return picked_scores, picked.gather(1, order)


def beam_search(
    runner: Any,
    input_ids: torch.Tensor,
    plan: Any,
    has_processors: bool,
    stop: StopRule,
    settings: DecodeSettings,
    *,
    num_beams: int,
    num_return_sequences: int,
    length_penalty: float,
    early_stopping: Union[bool, str],
    eos_token_id: Optional[torch.Tensor],
    encoder_outputs: Any = None,
) -> Any:
    """Beam search (``settings.do_sample`` False) or beam sampling; ``input_ids`` is
    ``(batch * num_beams, prompt_len)`` (each prompt repeated ``num_beams`` times)."""
    device = input_ids.device
    batch_beams, cur_len = input_ids.shape
    batch = batch_beams // num_beams
    prompt_len = cur_len
    max_length = settings.max_length
    do_sample = settings.do_sample
    hf_exact = do_sample and settings.sampling_backend == "hf_exact"
    seeds = request_seeds(batch, device, settings.seed, settings.generator) if do_sample and not hf_exact else None

    n_eos = eos_token_id.shape[0] if eos_token_id is not None else 0
    k = ops.beam_candidates(num_beams, n_eos)
    top_num_beam_mask = torch.cat(
        (torch.ones(num_beams, dtype=torch.bool), torch.zeros(k - num_beams, dtype=torch.bool))
    ).to(device)

    # transformers' fill value: `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1`
    # (a pad id of 0 is falsy there, so it falls back to the EOS id).
    pad = settings.pad_token_id
    if eos_token_id is None:
        fill: Any = -1
    else:
        fill = pad if pad is not None and bool(pad) else eos_token_id[0]
    fill = int(fill)

    running_sequences = torch.full((batch, num_beams, max_length), fill, dtype=torch.int64, device=device)
    running_sequences[:, :, :cur_len] = input_ids.reshape(batch, num_beams, cur_len)
    sequences = running_sequences.clone()
    running_beam_scores = torch.zeros((batch, num_beams), dtype=torch.float, device=device)
    running_beam_scores[:, 1:] = _NEG  # only the first beam's tokens at step 0
    beam_scores = torch.full((batch, num_beams), _NEG, dtype=torch.float, device=device)
    is_sent_finished = torch.zeros((batch, num_beams), dtype=torch.bool, device=device)
    heuristic_unsatisfied = torch.ones((batch, 1), dtype=torch.bool, device=device)
    hits = torch.zeros((batch, num_beams), dtype=torch.bool, device=device)
    running_beam_indices = torch.full(
        (batch, num_beams, max_length - cur_len), -1, dtype=torch.int32, device=device
    )
    beam_indices = running_beam_indices.clone()
    batch_offset = torch.arange(batch, device=device).view(-1, 1) * num_beams
    ones_k = torch.ones((batch, k), dtype=torch.bool, device=device)

    all_scores: Optional[tuple] = () if settings.output_scores else None
    raw_logits: Optional[tuple] = () if settings.output_logits else None
    attentions: Optional[tuple] = () if settings.output_attentions else None
    cross_attentions: Optional[tuple] = () if settings.output_attentions and settings.is_encoder_decoder else None
    hidden: Optional[tuple] = () if settings.output_hidden_states else None

    flat_running = input_ids
    step = 0
    while True:
        if step:
            flat_running = running_sequences[:, :, :cur_len].reshape(batch_beams, cur_len)
            logits = runner.step(flat_running)
        else:
            logits = runner.prefill(input_ids)
        vocab = logits.shape[-1]
        if raw_logits is not None:
            raw_logits += (logits.clone(),)
        if attentions is not None:
            self_att, cross_att = runner.attentions()
            attentions += (self_att,)
            if cross_attentions is not None:
                cross_attentions += (cross_att,)
        if hidden is not None:
            hidden += (runner.hidden_states(),)

        fused = not do_sample and not has_processors and all_scores is None
        if fused:
            # Fast path: log-softmax, beam scores and top-k in one op.
            top = ops.beam_topk(logits, running_beam_scores, num_beams, k, apply_log_softmax=True)
            topk_log_probs, topk_ids, topk_beams = top.scores, top.token_ids, top.beam_indices
        else:
            log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
            log_probs = plan.process(flat_running, log_probs)
            if all_scores is not None:
                all_scores += (log_probs.clone(),)
            if do_sample:
                accumulated = (log_probs.view(batch, num_beams, vocab) + running_beam_scores[:, :, None]).reshape(
                    batch, num_beams * vocab
                )
                topk_log_probs, flat = _sample_candidates(accumulated, k, hf_exact, settings.generator, seeds, step)
                topk_ids, topk_beams = flat % vocab, flat // vocab
            else:
                top = ops.beam_topk(log_probs, running_beam_scores, num_beams, k, apply_log_softmax=False)
                topk_log_probs, topk_ids, topk_beams = top.scores, top.token_ids, top.beam_indices

        # Candidate hypotheses: their source beam's history plus the new token.
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_beams)
        topk_running_sequences = _gather_beams(running_sequences, topk_beams)
        topk_running_sequences[:, :, cur_len] = topk_ids
        topk_running_beam_indices[:, :, cur_len - prompt_len] = (topk_beams + batch_offset).to(torch.int32)

        # Which candidates hit a stopping criterion.
        if stop.fast:
            if stop.max_length is not None and cur_len + 1 >= stop.max_length:
                hits = ones_k
            elif stop.eos is None:
                hits = torch.zeros_like(ones_k)
            else:
                hits = (topk_ids[..., None] == stop.eos).any(dim=-1)
        else:
            flat_candidates = topk_running_sequences[:, :, : cur_len + 1].reshape(batch * k, cur_len + 1)
            hits = stop.criteria(flat_candidates, all_scores).reshape(batch, k)

        # Best `num_beams` unfinished candidates keep running.
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * _NEG
        next_idx = torch.topk(topk_running_log_probs, k=num_beams)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_idx)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_idx)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_idx)

        # Finished candidates among the top `num_beams` may enter the finished store.
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / ((cur_len + 1 - prompt_len) ** length_penalty)
        batch_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & (early_stopping is True)
        finished_scores += batch_full.to(torch.float32) * _NEG
        finished_scores += (~heuristic_unsatisfied).to(torch.float32) * _NEG
        finished_scores += (~just_finished) * _NEG
        merged_scores = torch.cat((beam_scores, finished_scores), dim=1)
        keep = torch.topk(merged_scores, k=num_beams)[1]
        sequences = _gather_beams(torch.cat((sequences, topk_running_sequences), dim=1), keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(torch.cat((beam_indices, topk_running_beam_indices), dim=1), keep)
        is_sent_finished = _gather_beams(torch.cat((is_sent_finished, just_finished), dim=1), keep)

        # The cache rows follow the beams that continue.
        beam_idx = running_beam_indices[..., cur_len - prompt_len].reshape(batch_beams)
        runner.reorder_cache(beam_idx)
        plan.reorder(beam_idx)

        cur_len += 1
        step += 1
        # Can a running beam still beat the worst finished one? (transformers' heuristic)
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / (best_len**length_penalty)
        worst_finished = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        heuristic_unsatisfied = heuristic_unsatisfied & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
        go_on = (
            torch.any(heuristic_unsatisfied)
            & ~(torch.all(is_sent_finished) & (early_stopping is True))
            & ~torch.all(hits)
        )
        if not bool(go_on):
            break

    sequences = sequences[:, :num_return_sequences, :].reshape(batch * num_return_sequences, max_length)
    beam_scores = beam_scores[:, :num_return_sequences].reshape(batch * num_return_sequences)
    beam_indices = beam_indices[:, :num_return_sequences, :].reshape(batch * num_return_sequences, -1)
    # A hypothesis' length is where its beam indices stop being -1.
    generated = int((beam_indices + 1).bool().sum(dim=1).max())
    sequences = sequences[:, : prompt_len + generated]
    beam_indices = beam_indices[:, :generated]

    if not settings.return_dict:
        return sequences
    return output_object(
        encoder_decoder=settings.is_encoder_decoder, sequences=sequences, scores=all_scores, logits=raw_logits,
        cache=runner.cache, attentions=attentions, cross_attentions=cross_attentions, hidden_states=hidden,
        encoder_attentions=_encoder_field(encoder_outputs, "attentions", settings.output_attentions),
        encoder_hidden_states=_encoder_field(encoder_outputs, "hidden_states", settings.output_hidden_states),
        beam=True, sequences_scores=beam_scores if settings.output_scores else None, beam_indices=beam_indices,
    )
