"""pydecode.generate vs transformers' model.generate on tiny random models: the acceptance bar.

Greedy and beam search must give identical token ids (and beam_indices); scores, logits and
sequences_scores are compared with atol 1e-5 (float32; in practice they are bit-equal, the same
torch ops run in the same order). Batches of 1 and 4 with left padding, several EOS ids chosen
among the tokens the model actually emits (so rows do stop early).
"""

from __future__ import annotations

import pytest
import torch

import pydecode

from ._generate_models import (
    frequent_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    prompts,
    tiny_model,
)

ATOL = 1e-5


def _both(model, ids, mask, **kw):
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=mask, **kw)
    got = pydecode.generate(model, ids, attention_mask=mask, **kw)
    return expected, got


def _assert_same(expected, got, beam: bool = False):
    assert torch.equal(got.sequences, expected.sequences), (got.sequences, expected.sequences)
    for name in ("scores", "logits"):
        exp, ours = getattr(expected, name), getattr(got, name)
        if exp is None:
            assert ours is None
            continue
        assert len(ours) == len(exp)
        for a, b in zip(exp, ours):
            torch.testing.assert_close(b, a, atol=ATOL, rtol=0)
    if beam:
        assert torch.equal(got.beam_indices, expected.beam_indices)
        if expected.sequences_scores is not None:
            torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, atol=ATOL, rtol=0)
    assert type(got) is type(expected)


FULL = {"return_dict_in_generate": True, "output_scores": True, "output_logits": True}


@pytest.mark.parametrize("kind", ["llama", "gpt2", "qwen2", "bart"])
@pytest.mark.parametrize("batch", [1, 4])
def test_greedy_identical(kind, batch):
    model = tiny_model(kind)
    ids, mask = prompts(batch)
    eos = list(frequent_tokens(kind, 2))
    expected, got = _both(model, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0, **FULL)
    _assert_same(expected, got)
    # Plain LongTensor output too.
    with torch.no_grad():
        plain = model.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(pydecode.generate(model, ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos,
                                         pad_token_id=0), plain)


def test_greedy_rows_stop_early_and_are_padded():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 3))
    expected, got = _both(model, ids, mask, max_new_tokens=16, eos_token_id=eos, pad_token_id=0, **FULL)
    _assert_same(expected, got)
    new = got.sequences[:, ids.shape[1]:]
    assert bool(torch.isin(new, torch.tensor(eos)).any()), "the test must exercise EOS stops"


BEAM_CASES = [
    {"num_beams": 2},
    {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.5},
    {"num_beams": 4, "early_stopping": True},
    {"num_beams": 5, "num_return_sequences": 3, "early_stopping": "never", "length_penalty": 2.0},
    {"num_beams": 3, "early_stopping": "never", "length_penalty": -1.0},
    {"num_beams": 4, "early_stopping": False, "length_penalty": 0.0, "num_return_sequences": 4},
]


@pytest.mark.parametrize("case", BEAM_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("kind", ["llama", "bart"])
def test_beam_identical(kind, case):
    model = tiny_model(kind)
    ids, mask = prompts(4)
    eos = list(frequent_tokens(kind, 2))
    expected, got = _both(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0, **case, **FULL)
    _assert_same(expected, got, beam=True)


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_beam_identical_batch1_more_models(kind):
    model = tiny_model(kind)
    ids, mask = prompts(1)
    eos = list(frequent_tokens(kind, 3))
    expected, got = _both(model, ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=eos, pad_token_id=0, **FULL)
    _assert_same(expected, got, beam=True)


def test_beam_ids_without_return_dict_and_scores_only():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    expected, got = _both(model, ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(got, expected)
    # return_dict without scores: the fused beam_topk path, sequences_scores None like transformers.
    expected, got = _both(model, ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=eos, pad_token_id=0,
                          return_dict_in_generate=True)
    assert torch.equal(got.sequences, expected.sequences) and got.sequences_scores is None
    assert torch.equal(got.beam_indices, expected.beam_indices)


def test_processors_under_greedy_and_beam():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    procs = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_new_tokens": 3, "bad_words_ids": [[5], [7, 8]],
             "suppress_tokens": [9], "begin_suppress_tokens": [10]}
    for extra in ({}, {"num_beams": 3}):
        expected, got = _both(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0,
                              **procs, **extra, **FULL)
        _assert_same(expected, got, beam=bool(extra))


def test_compute_transition_scores_matches_transformers():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    _, got = _both(model, ids, mask, max_new_tokens=10, num_beams=3, num_return_sequences=2, eos_token_id=eos,
                   pad_token_id=0, length_penalty=1.0, **FULL)
    ours = pydecode.compute_transition_scores(got.sequences, got.scores, got.beam_indices)
    theirs = model.compute_transition_scores(got.sequences, got.scores, got.beam_indices)
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    # transformers' identity for beams: sequences_scores = sum / gen_len ** length_penalty.
    gen_len = (got.beam_indices >= 0).sum(-1)
    torch.testing.assert_close(ours.sum(1) / gen_len, got.sequences_scores, atol=1e-5, rtol=0)
    _, greedy = _both(model, ids, mask, max_new_tokens=6, pad_token_id=0, **FULL)
    torch.testing.assert_close(
        pydecode.compute_transition_scores(greedy.sequences, greedy.scores, normalize_logits=True),
        model.compute_transition_scores(greedy.sequences, greedy.scores, normalize_logits=True),
    )


def test_static_cache_and_returned_cache():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    expected, got = _both(model, ids, mask, max_new_tokens=8, pad_token_id=0, cache_implementation="static", **FULL)
    _assert_same(expected, got)
    assert type(got.cache) is type(expected.cache)
    expected, got = _both(model, ids, mask, max_new_tokens=8, pad_token_id=0, **FULL)
    assert got.cache.get_seq_length() == expected.cache.get_seq_length()


def test_deferred_stop_check_trims_extra_steps(monkeypatch):
    """The accelerator path (read the finished flag every few steps) on CPU: same output."""
    from pydecode.generation import scheduler

    monkeypatch.setattr(scheduler, "SYNC_EVERY_CPU", 5)
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 3))
    expected, got = _both(model, ids, mask, max_new_tokens=16, eos_token_id=eos, pad_token_id=0, **FULL)
    _assert_same(expected, got)
    assert got.cache.get_seq_length() == expected.cache.get_seq_length()


def test_custom_generate_and_patch():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    for extra in ({}, {"num_beams": 3}):
        kw = dict(attention_mask=mask, max_new_tokens=8, eos_token_id=eos, pad_token_id=0, **extra)
        with torch.no_grad():
            expected = model.generate(ids, **kw)
            via_hook = model.generate(ids, custom_generate=pydecode.custom_generate, **kw)
        assert torch.equal(via_hook, expected)
    pydecode.patch(model)
    try:
        assert getattr(model.generate, "_pydecode_patch", False)
        assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0),
                           pydecode.generate(model, ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0))
    finally:
        pydecode.unpatch(model)
    assert "generate" not in vars(model)


def test_generation_config_objects_and_model_defaults():
    from transformers import GenerationConfig as HFConfig

    model = tiny_model("llama")
    ids, mask = prompts(2)
    hf_cfg = HFConfig(max_new_tokens=7, num_beams=2, pad_token_id=0)
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=mask, generation_config=hf_cfg)
    assert torch.equal(pydecode.generate(model, ids, attention_mask=mask, generation_config=hf_cfg), expected)
    pd_cfg = pydecode.GenerationConfig(max_new_tokens=7, num_beams=2, pad_token_id=0)
    assert torch.equal(pydecode.generate(model, ids, attention_mask=mask, generation_config=pd_cfg), expected)
    # No length given: transformers' 20 new tokens (the model's generation_config has none).
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=mask, pad_token_id=0)
    assert torch.equal(pydecode.generate(model, ids, attention_mask=mask, pad_token_id=0), expected)


@pytest.mark.parametrize("kind", ["llama", "bart"])
def test_attentions_and_hidden_states_outputs(kind):
    model = tiny_model(kind)
    ids, mask = prompts(2)
    extra = {"output_attentions": True, "output_hidden_states": True, "return_dict_in_generate": True}
    for beams in (1, 2):
        expected, got = _both(model, ids, mask, max_new_tokens=4, pad_token_id=0, num_beams=beams, **extra)
        assert torch.equal(got.sequences, expected.sequences)
        names = ["attentions", "hidden_states"] if kind == "llama" else [
            "decoder_attentions", "cross_attentions", "decoder_hidden_states", "encoder_attentions",
            "encoder_hidden_states"]
        for name in names:
            exp, ours = getattr(expected, name), getattr(got, name)
            flat_exp = [t for step in exp for t in (step if isinstance(step, tuple) else (step,))]
            flat_ours = [t for step in ours for t in (step if isinstance(step, tuple) else (step,))]
            assert len(flat_exp) == len(flat_ours), name
            for a, b in zip(flat_exp, flat_ours):
                torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_crop_cache_uses_transformers_negative_crop():
    """transformers 5.24's Cache.crop takes minus the tokens to remove (a positive value raises)."""
    from transformers.cache_utils import DynamicCache

    from pydecode.generation.runner import HFModelRunner

    cache = DynamicCache()
    kv = torch.zeros(1, 2, 10, 4)
    cache.update(kv, kv, 0)
    holder = type("Holder", (), {"cache": cache})()
    HFModelRunner.crop_cache(holder, 7)
    assert cache.get_seq_length() == 7
    HFModelRunner.crop_cache(holder, 9)  # longer than the cache: nothing to remove
    assert cache.get_seq_length() == 7
