"""The processor plan: same scores as transformers' processor list, fused stages, greedy/sample tokens."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers
import transformers.generation.logits_process as hf

from pydecode.generation import GenerationConfig
from pydecode.generation import processors as pd
from pydecode.generation.plan import build_plan
from tests.helpers import assert_same

V = 80
B = 4
EOS = [2, 3]


def _model():
    config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


_M = None


def model():
    global _M
    if _M is None:
        _M = _model()
    return _M


def _prompt(length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 20, (B, length), generator=g)
    ids[1, :3] = 0  # left padding
    mask = (ids != 0).long()
    return ids, mask


def _lists(kwargs: dict, prompt: torch.Tensor, mask: torch.Tensor):
    """(pydecode list, transformers list) for the same config, as generate builds them."""
    full = {"num_beams": 1, "num_return_sequences": 1, "max_length": 40, **kwargs}
    call = dict(input_ids_seq_length=prompt.shape[1], encoder_input_ids=prompt,
                model_kwargs={"attention_mask": mask}, device="cpu")
    extra = {k: full.pop(k) for k in ("presence_penalty", "frequency_penalty") if k in full}
    ours_config = GenerationConfig(**full, **extra)
    theirs_config = transformers.GenerationConfig(**full)
    ours_config._eos_token_tensor = theirs_config._eos_token_tensor = torch.tensor(EOS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = pd.build_logits_processor_list(ours_config, model=model(), **call)
        theirs = model()._get_logits_processor(theirs_config, **call)
    return ours, theirs


COMBOS = [
    dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1),
    dict(do_sample=True, top_k=5, min_p=0.05, no_repeat_ngram_size=2, bad_words_ids=[[7], [8, 9]]),
    dict(do_sample=True, temperature=1.3, top_p=0.7, typical_p=0.9, repetition_penalty=0.8, min_new_tokens=2),
    dict(do_sample=True, top_k=10, renormalize_logits=True, sequence_bias={(5,): -2.0, (6, 7): 3.0}),
    dict(do_sample=True, temperature=0.6, top_k=3, watermarking_config=dict(greenlist_ratio=0.4, bias=3.0)),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=3, suppress_tokens=[10, 11], min_length=10),
    dict(num_beams=3, do_sample=True, top_k=6, top_p=0.8, repetition_penalty=1.2),
]


def _strategy(kwargs: dict) -> str:
    beams = kwargs.get("num_beams", 1) > 1
    sample = kwargs.get("do_sample", False)
    return {(False, False): "greedy", (False, True): "sample", (True, False): "beam", (True, True): "beam_sample"}[
        (beams, sample)
    ]


@pytest.mark.parametrize("kwargs", COMBOS)
def test_process_matches_transformers_list_over_steps(kwargs):
    prompt, mask = _prompt()
    ours, theirs = _lists(kwargs, prompt, mask)
    plan = build_plan(ours, None, strategy=_strategy(kwargs))
    ids = prompt
    g = torch.Generator().manual_seed(2)
    for step in range(6):
        scores = torch.randn(B, V, generator=g) * 3
        expected = theirs(ids, scores.clone())
        assert_same(plan.process(ids, scores.clone()), expected, what=f"{plan.describe()} step {step}")
        if plan.strategy in ("greedy", "sample"):
            tokens, processed = plan.next_tokens(ids, scores.clone(), 7, step, True)
            assert_same(processed, expected, what=f"next_tokens scores, step {step}")
            if plan.strategy == "greedy":
                assert torch.equal(tokens, torch.argmax(expected, dim=-1))
            else:
                assert bool((expected.gather(1, tokens[:, None]) > -float("inf")).all()), "sampled outside support"
        else:
            tokens = torch.randint(0, V, (B,), generator=g)
        ids = torch.cat([ids, tokens[:, None]], dim=1)


def test_bench_config_is_two_fused_stages():
    prompt, mask = _prompt()
    ours, _ = _lists(COMBOS[0], prompt, mask)
    plan = build_plan(ours, None, strategy="sample")
    assert plan.describe() == ["apply_penalties(repetition, state)", "filter_and_sample(temperature, top_k, top_p)"]
    beam = build_plan(ours, None, strategy="beam_sample")
    assert beam.describe()[0] == "apply_penalties(repetition)"


def test_presence_frequency_and_repetition_fuse_exactly():
    prompt, _ = _prompt()
    procs = pd.LogitsProcessorList([
        pd.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=torch.tensor([0, 3, 0, 0])),
        pd.PresencePenaltyLogitsProcessor(0.4, prompt.shape[1]),
        pd.FrequencyPenaltyLogitsProcessor(0.3, prompt.shape[1]),
    ])
    plan = build_plan(procs, None, strategy="greedy")
    assert plan.describe() == ["apply_penalties(repetition, presence, state)", "apply_penalties(frequency, state)"]
    ids = prompt
    g = torch.Generator().manual_seed(3)
    for step in range(5):
        scores = torch.randn(B, V, generator=g)
        assert_same(plan.process(ids, scores), procs(ids, scores), what=f"step {step}")
        ids = torch.cat([ids, torch.randint(4, 12, (B, 1), generator=g)], dim=1)


def test_state_never_changes_results():
    """Rows reordered without reorder(), repeated calls and a jump back: still the list's output."""
    prompt, _ = _prompt()
    procs = pd.LogitsProcessorList(
        [pd.RepetitionPenaltyLogitsProcessor(1.5), pd.FrequencyPenaltyLogitsProcessor(0.5, 8)]
    )
    plan = build_plan(procs, None, strategy="sample")
    g = torch.Generator().manual_seed(4)
    ids = prompt
    history = []
    for _ in range(4):
        ids = torch.cat([ids, torch.randint(4, 30, (B, 1), generator=g)], dim=1)
        history.append(ids)
    for ids in [history[0], history[1], history[1], history[1].flip(0), history[3], history[0]]:
        scores = torch.randn(B, V, generator=g)
        assert_same(plan.process(ids, scores), procs(ids, scores))
    stage = plan.stages[0]
    assert stage._builds == stage.MAX_BUILDS and stage.state is None  # gave up on the state: stateless now
    plan.reorder(torch.tensor([3, 2, 1, 0]))
    scores = torch.randn(B, V, generator=g)
    assert_same(plan.process(history[2], scores), procs(history[2], scores))


def test_user_processors_run_in_place_unchanged():
    calls = []

    def user(input_ids, scores):
        calls.append(scores.clone())
        return scores * 2

    top_k = hf.TopKLogitsWarper(4)  # a transformers warper: runs as itself
    procs = pd.LogitsProcessorList([pd.RepetitionPenaltyLogitsProcessor(1.2), user, pd.TemperatureLogitsWarper(0.5),
                                    top_k, pd.TopPLogitsWarper(0.9)])
    plan = build_plan(procs, None, strategy="sample")
    assert plan.describe() == [
        "apply_penalties(repetition, state)", "processor:function", "filter_and_sample(temperature)",
        "processor:TopKLogitsWarper", "filter_and_sample(top_p)",
    ]
    prompt, _ = _prompt()
    scores = torch.randn(B, V)
    assert_same(plan.process(prompt, scores), procs(prompt, scores))
    assert_same(calls[0], calls[1])  # the user saw the same penalised scores both times


def test_sampling_determinism_and_fused_equals_unfused():
    prompt, mask = _prompt()
    ours, _ = _lists(COMBOS[0], prompt, mask)
    fused = build_plan(ours, None, strategy="sample")
    # The same list with a no-op user processor at the end: the tail can no longer sample in place.
    unfused = build_plan(list(ours) + [lambda i, s: s], None, strategy="sample")
    assert fused._fused_penalties is not None  # the penalties run inside filter_and_sample_from_state
    assert unfused._fused_tail is None
    scores = torch.randn(B, V) * 2
    seeds, offsets = torch.tensor([11, 12, 13, 14]), torch.tensor([0, 5, 2, 9])
    a, _ = fused.next_tokens(prompt, scores, seeds, offsets, False)
    b, processed = fused.next_tokens(prompt, scores, seeds, offsets, True)
    c, _ = unfused.next_tokens(prompt, scores, seeds, offsets, False)
    assert torch.equal(a, b) and torch.equal(a, c)
    # A row's token depends on its seed and offset only, not on its position in the batch.
    order = torch.tensor([2, 0, 3, 1])
    d, _ = fused.next_tokens(prompt[order], scores[order], seeds[order], offsets[order], False)
    assert torch.equal(d, a[order])
    assert bool((processed.gather(1, a[:, None]) > -float("inf")).all())


def test_sampling_distribution_matches_processed_probabilities():
    rows = 4000
    procs = pd.LogitsProcessorList([pd.TemperatureLogitsWarper(0.7), pd.TopKLogitsWarper(6), pd.TopPLogitsWarper(0.9)])
    plan = build_plan(procs, None, strategy="sample")
    logits = torch.randn(1, 30, generator=torch.Generator().manual_seed(5)).expand(rows, 30).contiguous()
    ids = torch.zeros(rows, 1, dtype=torch.long)
    tokens, _ = plan.next_tokens(ids, logits, torch.arange(rows), 0, False)
    expected = hf.TopPLogitsWarper(0.9)(ids, hf.TopKLogitsWarper(6)(ids, logits[:1] / 0.7)).softmax(-1)[0]
    observed = torch.bincount(tokens, minlength=30).double() / rows
    assert float(observed[expected == 0].sum()) == 0.0
    # Total variation of 4000 draws over <= 6 tokens: expected ~0.02; 0.06 is > 4 standard deviations.
    assert 0.5 * float((observed - expected.double()).abs().sum()) < 0.06


def test_greedy_without_processors_and_bad_strategy():
    plan = build_plan(None, None, strategy="greedy")
    scores = torch.randn(B, V)
    tokens, processed = plan.next_tokens(torch.zeros(B, 1, dtype=torch.long), scores, None, None, True)
    assert torch.equal(tokens, scores.argmax(-1)) and processed is scores
    with pytest.raises(ValueError, match="strategy"):
        build_plan([], None, strategy="contrastive")
    with pytest.raises(ValueError, match="next_tokens"):
        build_plan([], None, strategy="beam").next_tokens(torch.zeros(B, 1, dtype=torch.long), scores)
