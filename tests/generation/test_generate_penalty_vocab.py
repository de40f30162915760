"""Penalty histories with ids the lm_head cannot emit, under generate: parity with transformers.

A model whose input embedding is larger than its output layer takes prompt ids >= the logits'
vocabulary; transformers' RepetitionPenaltyLogitsProcessor drops them, so pydecode.generate runs the
penalty ops with out_of_vocab="ignore" (the ops' default, "raise", would refuse them). A pad id past
the output vocabulary reaches the history the same way, through the rows that have finished.
"""

from __future__ import annotations

import functools

import pytest
import torch

import pydecode

from ._generate_models import VOCAB, frequent_tokens, one_thread, prompts, tiny_model  # noqa: F401

EXTRA = 8  # embedding rows past the lm_head's vocabulary


@functools.cache
def wide_embedding_llama():
    """The tiny Llama with a seeded (VOCAB + EXTRA)-row input embedding; the lm_head keeps VOCAB rows."""
    import copy

    model = copy.deepcopy(tiny_model("llama"))
    torch.manual_seed(5)
    model.set_input_embeddings(torch.nn.Embedding(VOCAB + EXTRA, model.config.hidden_size))
    return model.eval()


def test_prompt_and_pad_ids_past_the_output_vocabulary_match_transformers():
    model = wide_embedding_llama()
    ids, mask = prompts(3)
    ids[:, -3] = VOCAB + 2  # in the embedding, past the lm_head
    ids[1, -5] = VOCAB + EXTRA - 1
    eos = list(frequent_tokens("llama", 2))
    pad = VOCAB + 1  # finished rows append an id the lm_head cannot emit
    kw = dict(attention_mask=mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=pad, repetition_penalty=1.3,
              return_dict_in_generate=True, output_scores=True)
    for extra in ({}, {"num_beams": 2}):  # greedy keeps a PenaltyState, beam search calls apply_penalties
        with torch.no_grad():
            expected = model.generate(ids, **kw, **extra)
        got = pydecode.generate(model, ids, **kw, **extra)
        assert torch.equal(got.sequences, expected.sequences), (extra, got.sequences, expected.sequences)
        for a, b in zip(expected.scores, got.scores):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        assert bool((expected.sequences[:, ids.shape[1]:] == pad).any()), "no row finished: the pad path is untested"


def test_presence_and_frequency_accept_a_pad_id_past_the_output_vocabulary():
    """No transformers counterpart: finished rows feed the pad id to the generated-token history,
    which the penalties must skip rather than refuse (the fused state stage and the processors)."""
    model = wide_embedding_llama()
    ids, mask = prompts(3)
    eos = list(frequent_tokens("llama", 2))
    pad = VOCAB + 1
    for extra in ({"presence_penalty": 0.5}, {"presence_penalty": 0.5, "repetition_penalty": 1.2, "num_beams": 2},
                  {"frequency_penalty": 0.3, "do_sample": True, "seed": 3}):
        config = pydecode.GenerationConfig(max_new_tokens=10, eos_token_id=eos, pad_token_id=pad, **extra)
        out = pydecode.generate(model, ids, attention_mask=mask, generation_config=config)
        assert bool((out[:, ids.shape[1]:] == pad).any()), f"{extra}: no row finished"


def test_penalty_processors_treat_ids_past_the_vocabulary_like_transformers():
    """The standalone processors: repetition drops ids >= vocab (as transformers), presence skips a
    pad id >= vocab in the generated part, the encoder penalty refuses them (transformers' gather fails)."""
    from transformers.generation import logits_process as hf

    from pydecode.generation import processors as pd

    ids = torch.tensor([[3, VOCAB + 2, 5, 5], [VOCAB, 1, 1, VOCAB + 1]])
    scores = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(0))
    expected = hf.RepetitionPenaltyLogitsProcessor(1.3)(ids, scores.clone())
    assert torch.equal(pd.RepetitionPenaltyLogitsProcessor(1.3)(ids, scores.clone()), expected)
    presence = scores.clone()
    presence[0, 5] -= 0.5
    presence[1, 1] -= 0.5
    assert torch.equal(pd.PresencePenaltyLogitsProcessor(0.5, 2)(ids, scores.clone()), presence)
    with pytest.raises(RuntimeError):
        hf.EncoderRepetitionPenaltyLogitsProcessor(1.3, ids)(ids, scores.clone())
    with pytest.raises(ValueError, match=f"encoder_input_ids must hold token ids < {VOCAB}"):
        pd.EncoderRepetitionPenaltyLogitsProcessor(1.3, ids)(ids, scores.clone())
