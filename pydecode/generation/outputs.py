"""Output classes of ``pydecode.generate`` and ``compute_transition_scores``.

The output classes are transformers' own (``GenerateDecoderOnlyOutput``,
``GenerateEncoderDecoderOutput``, ``GenerateBeamDecoderOnlyOutput``,
``GenerateBeamEncoderDecoderOutput``) when transformers is importable, so code that checks
``isinstance(out, transformers.generation.GenerateBeamDecoderOnlyOutput)`` or reads
``out.sequences_scores`` keeps working. Without transformers (the plain-PyTorch protocol),
small dataclasses with the same field names stand in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

__all__ = [
    "GenerateBeamDecoderOnlyOutput",
    "GenerateBeamEncoderDecoderOutput",
    "GenerateDecoderOnlyOutput",
    "GenerateEncoderDecoderOutput",
    "compute_transition_scores",
    "output_object",
]

try:  # transformers is optional: the plain-PyTorch protocol works without it
    from transformers.generation.utils import (
        GenerateBeamDecoderOnlyOutput,
        GenerateBeamEncoderDecoderOutput,
        GenerateDecoderOnlyOutput,
        GenerateEncoderDecoderOutput,
    )
except ImportError:  # pragma: no cover - exercised only where transformers is missing

    class _Output:
        def __getitem__(self, key: str) -> Any:
            return getattr(self, key)

    @dataclass
    class GenerateDecoderOnlyOutput(_Output):  # type: ignore[no-redef]
        sequences: torch.Tensor = None
        scores: Optional[tuple] = None
        logits: Optional[tuple] = None
        attentions: Optional[tuple] = None
        hidden_states: Optional[tuple] = None
        cache: Any = None

    @dataclass
    class GenerateEncoderDecoderOutput(_Output):  # type: ignore[no-redef]
        sequences: torch.Tensor = None
        scores: Optional[tuple] = None
        logits: Optional[tuple] = None
        encoder_attentions: Optional[tuple] = None
        encoder_hidden_states: Optional[tuple] = None
        decoder_attentions: Optional[tuple] = None
        cross_attentions: Optional[tuple] = None
        decoder_hidden_states: Optional[tuple] = None
        cache: Any = None

    @dataclass
    class GenerateBeamDecoderOnlyOutput(_Output):  # type: ignore[no-redef]
        sequences: torch.Tensor = None
        sequences_scores: Optional[torch.Tensor] = None
        scores: Optional[tuple] = None
        logits: Optional[tuple] = None
        beam_indices: Optional[torch.Tensor] = None
        attentions: Optional[tuple] = None
        hidden_states: Optional[tuple] = None
        cache: Any = None

    @dataclass
    class GenerateBeamEncoderDecoderOutput(_Output):  # type: ignore[no-redef]
        sequences: torch.Tensor = None
        sequences_scores: Optional[torch.Tensor] = None
        scores: Optional[tuple] = None
        logits: Optional[tuple] = None
        beam_indices: Optional[torch.Tensor] = None
        encoder_attentions: Optional[tuple] = None
        encoder_hidden_states: Optional[tuple] = None
        decoder_attentions: Optional[tuple] = None
        cross_attentions: Optional[tuple] = None
        decoder_hidden_states: Optional[tuple] = None
        cache: Any = None


def output_object(
    *,
    encoder_decoder: bool,
    sequences: torch.Tensor,
    scores: Optional[tuple],
    logits: Optional[tuple],
    cache: Any,
    attentions: Optional[tuple] = None,
    cross_attentions: Optional[tuple] = None,
    hidden_states: Optional[tuple] = None,
    encoder_attentions: Optional[tuple] = None,
    encoder_hidden_states: Optional[tuple] = None,
    beam: bool = False,
    sequences_scores: Optional[torch.Tensor] = None,
    beam_indices: Optional[torch.Tensor] = None,
) -> Any:
    """The ``return_dict_in_generate`` object transformers returns for this kind of decoding: the
    (beam) decoder-only or encoder-decoder class, the per-step attentions / hidden states under
    their ``decoder_*`` names for an encoder-decoder model."""
    fields: dict[str, Any] = {"sequences": sequences, "scores": scores, "logits": logits, "cache": cache}
    if beam:
        fields.update(sequences_scores=sequences_scores, beam_indices=beam_indices)
    if encoder_decoder:
        fields.update(encoder_attentions=encoder_attentions, encoder_hidden_states=encoder_hidden_states,
                      decoder_attentions=attentions, cross_attentions=cross_attentions,
                      decoder_hidden_states=hidden_states)
        cls = GenerateBeamEncoderDecoderOutput if beam else GenerateEncoderDecoderOutput
    else:
        fields.update(attentions=attentions, hidden_states=hidden_states)
        cls = GenerateBeamDecoderOnlyOutput if beam else GenerateDecoderOnlyOutput
    if "cache" not in getattr(cls, "__dataclass_fields__", {"cache": None}):
        fields["past_key_values"] = fields.pop("cache")  # transformers before 5.24 (5.17, say) names it so
    return cls(**fields)


def compute_transition_scores(
    sequences: torch.Tensor,
    scores: tuple[torch.Tensor, ...],
    beam_indices: Optional[torch.Tensor] = None,
    normalize_logits: bool = False,
) -> torch.Tensor:
    """Score of each generated token, as transformers' ``model.compute_transition_scores``.

    Args:
        sequences: ``(rows, length)`` int64, ``out.sequences`` (prompt included; only the last
            ``len(scores)`` (or beam length) columns are read).
        scores: ``out.scores``: one float ``(rows_at_step, vocab)`` tensor per generated token
            (``rows_at_step = batch * num_beams`` for beam search).
        beam_indices: ``out.beam_indices`` ``(rows, steps)`` for beam search (``-1`` past the end
            of a hypothesis), None otherwise (each row is its own beam).
        normalize_logits: apply ``log_softmax`` over the vocabulary first.

    Returns:
        float ``(rows, steps)``: the score of the chosen token at each step, 0 past a beam's end.
        For beam search with ``normalize_logits=False``:
        ``out.sequences_scores == result.sum(1) / gen_len ** length_penalty`` (gen_len = the
        number of non-padded steps), transformers' identity.
    """
    if not isinstance(scores, (tuple, list)) or not scores:
        raise ValueError("scores must be a non-empty tuple of (rows, vocab) tensors (out.scores)")
    vocab = scores[0].shape[-1]
    if beam_indices is None:
        # Without beams every row is its own (single) beam at every step.
        beam_indices = torch.arange(scores[0].shape[0], device=sequences.device).view(-1, 1).expand(-1, len(scores))
    # (rows_at_step * vocab, steps): column t holds every score of step t.
    stacked = torch.stack(tuple(scores)).reshape(len(scores), -1).transpose(0, 1)
    if normalize_logits:
        stacked = torch.log_softmax(stacked.reshape(-1, vocab, stacked.shape[-1]), dim=1)
        stacked = stacked.reshape(-1, stacked.shape[-1])
    ended = beam_indices < 0
    steps = int((~ended).long().sum(-1).max())
    beam_indices = beam_indices[:, :steps].clone()
    ended = ended[:, :steps]
    beam_indices[ended] = 0
    chosen = sequences[:, sequences.shape[-1] - steps:] + beam_indices.to(sequences.dtype) * vocab
    transition = stacked.gather(0, chosen)
    transition[ended] = 0
    return transition
