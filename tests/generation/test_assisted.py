"""Assisted decoding (assistant model, prompt lookup) against plain decoding and transformers 5.24."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from pydecode.generation.assisted import PromptLookupCandidateGenerator, _speculative_philox  # noqa: E402
from pydecode.generation.generate import generate  # noqa: E402

VOCAB = 96
PROMPT = torch.tensor([[1, 5, 9, 13, 5, 9, 22, 31, 5, 9]])


def _llama(layers: int, hidden: int, seed: int):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1,
        eos_token_id=2, pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


class _CountCalls:
    """Counts a model's forward calls (a forward pre-hook)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()

    def __enter__(self):
        return self


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: each op is microseconds of work, so intra-op thread fork/join dominates
    # (and stalls on a loaded machine); one thread runs this file several times faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    return _llama(2, 64, 0), _llama(1, 32, 1)


def _kw(**extra):
    return {"attention_mask": torch.ones_like(PROMPT), "max_new_tokens": 24, "pad_token_id": 0, **extra}


@pytest.mark.parametrize("source", ["tiny_assistant", "self_assistant", "prompt_lookup"])
def test_greedy_identical_to_plain_greedy(models, source):
    target, tiny = models
    # Several EOS ids, one of them produced mid-way by this model (token 18 at step 5), so the
    # accepted block is cut after an EOS.
    kw = _kw(eos_token_id=[2, 18], return_dict_in_generate=True, output_scores=True, output_logits=True)
    extra = {"prompt_lookup_num_tokens": 3} if source == "prompt_lookup" else {
        "assistant_model": tiny if source == "tiny_assistant" else target}
    with torch.no_grad():
        ref = target.generate(PROMPT, do_sample=False, **kw)
        hf_assisted = target.generate(PROMPT, do_sample=False, **kw, **extra)
        ours = generate(target, PROMPT, do_sample=False, **kw, **extra)
    assert torch.equal(ours.sequences, ref.sequences)
    assert torch.equal(ours.sequences, hf_assisted.sequences)
    assert ours.sequences[0, -1] == 18  # stopped on the second EOS id
    assert len(ours.scores) == len(ref.scores) == len(ours.logits)
    for got, want in zip(ours.scores, ref.scores):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for got, want in zip(ours.logits, ref.logits):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_greedy_long_run_accepts_drafts(models):
    target, tiny = models
    kw = _kw(max_new_tokens=40)
    with torch.no_grad():
        ref = target.generate(PROMPT, do_sample=False, **kw)
        for extra in ({"prompt_lookup_num_tokens": 4, "max_matching_ngram_size": 3}, {"assistant_model": tiny}):
            with _CountCalls(target) as counter:
                ours = generate(target, PROMPT, do_sample=False, **kw, **extra)
            assert torch.equal(ours, ref)
            if "prompt_lookup_num_tokens" in extra:  # the output repeats itself: lookups get accepted
                assert counter.calls < 40


def test_processors_with_lookup_and_assistant(models):
    """Processors that forbid tokens: the candidates are cut like transformers' (same number of target
    forwards for prompt lookup) and the ids stay those of plain greedy."""
    target, tiny = models
    kw = _kw(max_new_tokens=30, no_repeat_ngram_size=3, repetition_penalty=1.2, eos_token_id=[2, 7])
    with torch.no_grad():
        ref = target.generate(PROMPT, do_sample=False, **kw)
        with _CountCalls(target) as hf_calls:
            target.generate(PROMPT, do_sample=False, prompt_lookup_num_tokens=3, **kw)
        with _CountCalls(target) as our_calls:
            lookup = generate(target, PROMPT, do_sample=False, prompt_lookup_num_tokens=3, **kw)
        assisted = generate(target, PROMPT, do_sample=False, assistant_model=tiny, **kw)
    assert torch.equal(lookup, ref) and torch.equal(assisted, ref)
    assert our_calls.calls == hf_calls.calls


def _bart(layers: int, d_model: int, seed: int):
    torch.manual_seed(seed)
    cfg = transformers.BartConfig(
        vocab_size=VOCAB, d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model,
        max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=3,
        forced_eos_token_id=None, init_std=0.3,  # a larger init than the default, so the output varies
    )
    return transformers.BartForConditionalGeneration(cfg).eval()


def test_encoder_decoder_assistant_and_lookup():
    target, tiny = _bart(2, 64, 1), _bart(1, 32, 1)
    prompt = torch.tensor([[0, 5, 9, 13, 5, 9, 22, 31, 5, 9, 2]])
    kw = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=16, eos_token_id=95, do_sample=False)
    with torch.no_grad():
        ref = target.generate(prompt, **kw)
        lookup = generate(target, prompt, prompt_lookup_num_tokens=3, **kw)
        assisted = generate(target, prompt, assistant_model=tiny, **kw)
        hf_assisted = target.generate(prompt, assistant_model=tiny, **kw)
    assert torch.equal(lookup, ref) and torch.equal(assisted, ref) and torch.equal(hf_assisted, ref)
    assert len(set(ref[0].tolist())) > 3  # not a degenerate repetition


def test_prompt_lookup_sampling_equals_plain_sampling(models):
    target, _ = models
    kw = _kw(do_sample=True, top_k=8, temperature=0.7)
    with torch.no_grad():
        plain = generate(target, PROMPT, seed=11, **kw)
        lookup = generate(target, PROMPT, seed=11, prompt_lookup_num_tokens=3, **kw)
        other = generate(target, PROMPT, seed=12, prompt_lookup_num_tokens=3, **kw)
        # hf_exact: transformers' own draws, identical ids under the same torch seed.
        torch.manual_seed(3)
        hf = target.generate(PROMPT, prompt_lookup_num_tokens=3, **kw)
        torch.manual_seed(3)
        ours_exact = generate(target, PROMPT, prompt_lookup_num_tokens=3, sampling_backend="hf_exact", **kw)
    assert torch.equal(lookup, plain)
    assert not torch.equal(other, plain)
    assert torch.equal(ours_exact, hf)


def test_speculative_sampling_support_and_determinism(models):
    target, tiny = models
    kw = _kw(do_sample=True, top_k=3, max_new_tokens=30)
    with torch.no_grad():
        a = generate(target, PROMPT, seed=5, assistant_model=tiny, **kw)
        b = generate(target, PROMPT, seed=5, assistant_model=tiny, **kw)
        c = generate(target, PROMPT, seed=6, assistant_model=tiny, **kw)
        logits = target(a).logits[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Support: every token is among the target's 3 most likely tokens at its position.
    start = PROMPT.shape[1]
    for pos in range(start, a.shape[1]):
        top = logits[pos - 1].topk(3).indices
        assert a[0, pos] in top, f"token {int(a[0, pos])} at {pos} outside the top-3 {top.tolist()}"


def test_speculative_rule_distribution():
    """Draft x ~ q, accept/resample with Philox: the first token is distributed as p.

    800 trials: sampling noise gives a total variation near 0.04; the classic mistakes (resampling
    from p or q instead of norm(max(0, p - q)), accepting every draft) give 0.16 to 0.56 here.
    """
    gen = torch.Generator().manual_seed(0)
    p_logits = torch.tensor([[[2.0, 1.0, 0.5, 0.0, -1.0, 1.5], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                              [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]]])
    q_logits = torch.tensor([[[0.0, 2.0, 0.0, 1.0, 0.5, 0.0], [1.0, 0.0, 2.0, 0.0, 0.0, 0.0]]])
    trials = 800
    drafts = torch.multinomial(q_logits[0].softmax(-1), trials, replacement=True, generator=gen).T  # (trials, 2)
    counts = torch.zeros(6)
    accepted = 0
    for s in range(trials):
        tokens, n = _speculative_philox(drafts[s : s + 1], q_logits, p_logits, torch.tensor([s]), 0)
        counts[tokens[0, 0]] += 1
        accepted += n
    tv = 0.5 * (counts / trials - p_logits[0, 0].softmax(-1)).abs().sum()
    assert tv < 0.09, f"total variation {tv:.3f}"
    assert 0 < accepted < 2 * trials  # both branches (accept and resample) ran


def test_prompt_lookup_candidates_match_transformers():
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator as HFLookup
    from transformers.generation.logits_process import LogitsProcessorList, NoBadWordsLogitsProcessor

    class ListPlan:  # the plan's `process` is all the candidate check uses
        def __init__(self, processors):
            self.processors = processors

        def process(self, input_ids, scores):
            return self.processors(input_ids, scores)

    torch.manual_seed(0)
    eos = torch.tensor([7])
    bad = LogitsProcessorList([NoBadWordsLogitsProcessor([[4], [9, 10]], eos_token_id=7)])
    cut = 0
    for trial in range(20):
        ids = torch.randint(3, 12, (1, 14))
        for ngram, num in ((2, 3), (3, 5), (1, 2)):
            ours, _ = PromptLookupCandidateGenerator(eos, num, ngram, 40).get_candidates(ids)
            ref, _ = HFLookup(eos_token_id=eos, num_output_tokens=num, max_matching_ngram_size=ngram,
                              max_length=40).get_candidates(ids)
            assert torch.equal(torch.cat([ids, ours], dim=1), ref), (trial, ngram, num)
            # With processors that forbid tokens 4 and 10-after-9.
            cut_ours, _ = PromptLookupCandidateGenerator(eos, num, ngram, 40, ListPlan(bad), 12).get_candidates(ids)
            cut_ref, _ = HFLookup(eos_token_id=eos, num_output_tokens=num, max_matching_ngram_size=ngram,
                                  max_length=40, logits_processor=bad, vocab_size=12).get_candidates(ids)
            assert torch.equal(torch.cat([ids, cut_ours], dim=1), cut_ref), (trial, ngram, num)
            cut += cut_ours.shape[1] != ours.shape[1]
    assert cut > 0  # the forbidden-token cut was exercised


def test_streamer_gets_accepted_tokens(models):
    target, tiny = models

    class Recorder:
        def __init__(self):
            self.chunks, self.ended = [], 0

        def put(self, value):
            self.chunks.append(value.reshape(-1))

        def end(self):
            self.ended += 1

    rec = Recorder()
    with torch.no_grad():
        out = generate(target, PROMPT, do_sample=False, assistant_model=tiny, streamer=rec, **_kw())
    assert rec.ended == 1 and torch.equal(torch.cat(rec.chunks), out[0])


def test_bad_assisted_setups_raise_before_any_model_call(models):
    target, tiny = models
    other_vocab = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB + 4, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2)
    ).eval()
    with _CountCalls(target) as t_calls, _CountCalls(other_vocab) as a_calls:
        with pytest.raises(ValueError, match="different tokenizers"):
            generate(target, PROMPT, assistant_model=other_vocab, **_kw())
        with pytest.raises(ValueError, match="universal assisted decoding"):
            generate(target, PROMPT, assistant_model=other_vocab, tokenizer=object(), assistant_tokenizer=object(),
                     **_kw())
        with pytest.raises(ValueError, match="batch_size = 1"):
            generate(target, PROMPT.repeat(2, 1), assistant_model=tiny, max_new_tokens=4, pad_token_id=0,
                     attention_mask=torch.ones(2, PROMPT.shape[1], dtype=torch.long))
        with pytest.raises(ValueError, match="num_return_sequences"):
            generate(target, PROMPT, prompt_lookup_num_tokens=2, do_sample=True, num_return_sequences=2, **_kw())
    assert t_calls.calls == 0 and a_calls.calls == 0


def test_heuristic_schedule_writes_back(models):
    """num_assistant_tokens grows by 2 after fully accepted rounds and is written back, as in transformers."""
    import copy

    target, _ = models

    def twin():  # drafts exactly what the target picks: every round fully accepted
        model = copy.deepcopy(target)
        model.generation_config.num_assistant_tokens = 3
        model.generation_config.num_assistant_tokens_schedule = "heuristic"
        model.generation_config.assistant_confidence_threshold = 0.0
        return model

    ours_twin, hf_twin = twin(), twin()
    with torch.no_grad():
        with _CountCalls(target) as our_calls:
            out = generate(target, PROMPT, do_sample=False, assistant_model=ours_twin, **_kw(max_new_tokens=20))
        with _CountCalls(target) as hf_calls:
            ref = target.generate(PROMPT, do_sample=False, assistant_model=hf_twin, **_kw(max_new_tokens=20))
    assert torch.equal(out, ref)
    # Rounds of 3, 5, 7 drafts (+1 bonus each) then 1 (the length budget): 4 target forwards.
    assert our_calls.calls == hf_calls.calls == 4
    assert ours_twin.generation_config.num_assistant_tokens == hf_twin.generation_config.num_assistant_tokens == 11
