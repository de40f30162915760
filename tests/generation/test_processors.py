"""pydecode's processors against transformers' classes of the same name, and the list generate builds."""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch
import transformers
import transformers.generation.logits_process as hf

from pydecode.generation import GenerationConfig, WatermarkingConfig
from pydecode.generation import processors as pd
from tests.helpers import assert_same

V = 64
B = 4
L = 9
EOS = [2, 3]


KINDS = ["random", "peaked", "tied", "-inf"]


def _rows(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(KINDS.index(kind))
    if kind == "random":
        return torch.randn(B, V, generator=g) * 3
    if kind == "peaked":
        s = torch.randn(B, V, generator=g)
        s[torch.arange(B), torch.randint(0, V, (B,), generator=g)] += 25.0
        return s
    if kind == "tied":
        return torch.randint(0, 4, (B, V), generator=g).float()
    # "-inf": partly -inf rows (half the vocabulary) and one row with a single finite entry
    s = torch.randn(B, V, generator=g) * 2
    s[:, ::2] = -math.inf
    s[B - 1, :] = -math.inf
    s[B - 1, 7] = 0.5
    return s


def _ids(length: int = L) -> torch.Tensor:
    """Left-padded ids (pad 0) with repeats, so n-gram and penalty processors have work."""
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(4, 12, (B, length), generator=g)
    ids[1, :3] = 0
    ids[2, :1] = 0
    if length >= 6:
        ids[:, -2:] = ids[:, 2:4]  # the last bigram repeats an earlier one
    return ids


ENC = torch.randint(4, V, (2, 6), generator=torch.Generator().manual_seed(3))
PAD_LENGTHS = torch.tensor([0, 3, 1, 0])
BIAS = {(5,): 2.0, (7, 9): -1.5, (4, 5, 6): 4.0, (8, 9): 1.0}


def _allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
    return [int(sent[-1]) % V, (batch_id * 7 + 5) % V, 20]


# (name, our processor, transformers' processor, length of input_ids)
CASES = [
    ("temperature", lambda m: m.TemperatureLogitsWarper(0.7), L),
    ("top_k", lambda m: m.TopKLogitsWarper(5), L),
    ("top_k_keep", lambda m: m.TopKLogitsWarper(3, min_tokens_to_keep=6), L),
    ("top_k_over_vocab", lambda m: m.TopKLogitsWarper(1000), L),
    ("top_p", lambda m: m.TopPLogitsWarper(0.8), L),
    ("top_p_keep", lambda m: m.TopPLogitsWarper(0.3, min_tokens_to_keep=3, filter_value=-100.0), L),
    ("top_p_one", lambda m: m.TopPLogitsWarper(1.0), L),
    ("min_p", lambda m: m.MinPLogitsWarper(0.1), L),
    ("min_p_keep", lambda m: m.MinPLogitsWarper(0.3, min_tokens_to_keep=4), L),
    ("top_h", lambda m: m.TopHLogitsWarper(0.5), L),
    ("typical", lambda m: m.TypicalLogitsWarper(0.7, min_tokens_to_keep=2), L),
    ("epsilon", lambda m: m.EpsilonLogitsWarper(0.02), L),
    ("eta", lambda m: m.EtaLogitsWarper(0.05, min_tokens_to_keep=2), L),
    ("repetition", lambda m: m.RepetitionPenaltyLogitsProcessor(1.3), L),
    ("repetition_padded", lambda m: m.RepetitionPenaltyLogitsProcessor(0.7, prompt_ignore_length=PAD_LENGTHS), L),
    ("repetition_int_ignore", lambda m: m.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=4), L),
    ("encoder_repetition", lambda m: m.EncoderRepetitionPenaltyLogitsProcessor(1.7, ENC), L),
    ("no_repeat_2", lambda m: m.NoRepeatNGramLogitsProcessor(2), L),
    ("no_repeat_3", lambda m: m.NoRepeatNGramLogitsProcessor(3), L),
    ("no_repeat_long", lambda m: m.NoRepeatNGramLogitsProcessor(20), L),
    ("encoder_no_repeat", lambda m: m.EncoderNoRepeatNGramLogitsProcessor(2, ENC), L),
    ("encoder_no_repeat_1", lambda m: m.EncoderNoRepeatNGramLogitsProcessor(1, ENC), L),
    ("sequence_bias", lambda m: m.SequenceBiasLogitsProcessor(BIAS), L),
    ("sequence_bias_list", lambda m: m.SequenceBiasLogitsProcessor([[[5], 2.5], [[6, 11], -3.0]]), L),
    ("bad_words", lambda m: m.NoBadWordsLogitsProcessor([[5], [6, 7], [2], [4, 2]], EOS), L),
    ("min_length", lambda m: m.MinLengthLogitsProcessor(12, EOS), L),
    ("min_length_done", lambda m: m.MinLengthLogitsProcessor(5, EOS), L),
    ("min_new_tokens", lambda m: m.MinNewTokensLengthLogitsProcessor(6, 5, 2), L),
    ("forced_bos", lambda m: m.ForcedBOSTokenLogitsProcessor(4), 1),
    ("forced_eos", lambda m: m.ForcedEOSTokenLogitsProcessor(L + 1, EOS), L),
    ("inf_nan", lambda m: m.InfNanRemoveLogitsProcessor(), L),
    ("exp_decay", lambda m: m.ExponentialDecayLengthPenalty((2, 1.5), EOS, 4), L),
    ("normalization", lambda m: m.LogitNormalization(), L),
    ("suppress", lambda m: m.SuppressTokensLogitsProcessor([1, 5, 63]), L),
    ("suppress_at_begin", lambda m: m.SuppressTokensAtBeginLogitsProcessor([1, 5], L), L),
    ("prefix", lambda m: m.PrefixConstrainedLogitsProcessor(_allowed, 2), L),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,make,length", CASES, ids=[c[0] for c in CASES])
def test_processor_matches_transformers(name, make, length, kind):
    scores, ids = _rows(kind), _ids(length)
    if name == "inf_nan":
        scores[0, 3], scores[1, 4] = math.nan, math.inf
    expected = make(hf)(ids.clone(), scores.clone())
    actual = make(pd)(ids.clone(), scores.clone())
    assert actual.dtype == torch.float32
    assert_same(actual, expected, what=f"{name} on {kind} rows")


@pytest.mark.parametrize("scheme,width", [("lefthash", 1), ("selfhash", 2), ("lefthash", 3)])
def test_watermark_matches_transformers(scheme, width):
    scores, ids = _rows("random"), _ids()
    kwargs = dict(greenlist_ratio=0.3, bias=1.5, hashing_key=1234, seeding_scheme=scheme, context_width=width)
    expected = hf.WatermarkLogitsProcessor(V, "cpu", **kwargs)(ids, scores.clone())
    actual = pd.WatermarkLogitsProcessor(V, "cpu", **kwargs)(ids, scores.clone())
    assert_same(actual, expected, what=f"watermark {scheme}")


def test_watermark_hash_scheme_biases_a_ratio_of_tokens():
    scores, ids = torch.zeros(B, 4000), _ids()
    out = pd.WatermarkLogitsProcessor(4000, greenlist_ratio=0.25, bias=2.0, seeding_scheme="pydecode-hash")(ids, scores)
    green = out == 2.0
    assert bool(((out == 0) | green).all())
    assert abs(green.float().mean().item() - 0.25) < 0.03
    with pytest.raises(ValueError, match="seeding_scheme"):
        pd.WatermarkLogitsProcessor(V, seeding_scheme="nope")


def _tiny_llama():
    config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def test_unbatched_cfg_matches_transformers():
    model = _tiny_llama()
    ids = _ids()
    negative = torch.randint(4, V, (B, 3), generator=torch.Generator().manual_seed(5))
    ours = pd.UnbatchedClassifierFreeGuidanceLogitsProcessor(1.5, model, unconditional_ids=negative)
    theirs = hf.UnbatchedClassifierFreeGuidanceLogitsProcessor(1.5, model, unconditional_ids=negative)
    with torch.no_grad():
        for step in range(3):  # the processor keeps state across steps
            scores = _rows("random")
            step_ids = torch.cat([ids, torch.full((B, step), 5)], dim=1)
            assert_same(ours(step_ids, scores.clone()), theirs(step_ids, scores.clone()), what=f"cfg step {step}")


def _reference_openai(scores, generated, presence, frequency):
    out = scores.clone()
    for b in range(scores.shape[0]):
        for token, count in zip(*torch.unique(generated[b], return_counts=True)):
            out[b, token] -= presence + frequency * float(count)
    return out


def test_presence_and_frequency_penalties():
    scores, ids = _rows("random"), _ids()
    generated = ids[:, 5:]
    assert_same(pd.PresencePenaltyLogitsProcessor(0.5, 5)(ids, scores), _reference_openai(scores, generated, 0.5, 0))
    assert_same(pd.FrequencyPenaltyLogitsProcessor(0.25, 5)(ids, scores), _reference_openai(scores, generated, 0, 0.25))
    assert_same(pd.PresencePenaltyLogitsProcessor(1.0, L)(ids, scores), scores)  # nothing generated yet
    with pytest.raises(ValueError, match="presence_penalty"):
        pd.PresencePenaltyLogitsProcessor(math.inf, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.TemperatureLogitsWarper(0.0),
        lambda m: m.TopKLogitsWarper(0),
        lambda m: m.TopPLogitsWarper(1.5),
        lambda m: m.MinPLogitsWarper(-0.1),
        lambda m: m.TypicalLogitsWarper(1.0),
        lambda m: m.EpsilonLogitsWarper(0.0),
        lambda m: m.EtaLogitsWarper(1.0),
        lambda m: m.TopHLogitsWarper(0.0),
        lambda m: m.RepetitionPenaltyLogitsProcessor(1),
        lambda m: m.NoRepeatNGramLogitsProcessor(0),
        lambda m: m.SequenceBiasLogitsProcessor({}),
        lambda m: m.NoBadWordsLogitsProcessor([[-1]]),
        lambda m: m.MinLengthLogitsProcessor(-1, 2),
        lambda m: m.ForcedEOSTokenLogitsProcessor(5, [-2]),
    ],
)
def test_bad_arguments_raise_like_transformers(make):
    with pytest.raises(ValueError) as theirs:
        make(hf)
    with pytest.raises(ValueError) as ours:
        make(pd)
    # Same exception type, and our message names the argument transformers' message names.
    named = str(theirs.value).split("`")[1] if "`" in str(theirs.value) else ""
    assert named in str(ours.value)


def test_sequence_bias_token_outside_vocabulary_raises():
    with pytest.raises(ValueError, match="vocabulary"):
        pd.SequenceBiasLogitsProcessor({(V + 1,): 1.0})(_ids(), _rows("random"))


def test_list_passes_kwargs_and_accepts_transformers_processors():
    class NeedsExtra:
        def __call__(self, input_ids, scores, extra):
            return scores + extra

    chain = pd.LogitsProcessorList([hf.TopKLogitsWarper(5), pd.TemperatureLogitsWarper(0.5), NeedsExtra()])
    scores, ids = _rows("random"), _ids()
    expected = hf.TemperatureLogitsWarper(0.5)(ids, hf.TopKLogitsWarper(5)(ids, scores)) + 1.0
    assert_same(chain(ids, scores, extra=1.0), expected)
    with pytest.raises(ValueError, match="required parameters"):
        chain(ids, scores)


# --------------------------------------------------------------------------- build_logits_processor_list
_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        _MODEL = _tiny_llama()
    return _MODEL


def _same_processor(ours, theirs) -> None:
    assert type(ours).__name__ == type(theirs).__name__
    if type(theirs).__module__.startswith("transformers"):
        if not type(ours).__module__.startswith("pydecode"):
            assert ours is theirs or type(ours) is type(theirs)
            return
    for key, value in vars(ours).items():
        if key.startswith("_") and key not in ("_num_beams", "_prefix_allowed_tokens_fn"):
            continue
        if key not in vars(theirs):
            continue
        other = vars(theirs)[key]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value.cpu(), other.cpu()), f"{type(ours).__name__}.{key}"
        elif key == "model":
            assert value is other
        elif key != "unconditional_context":
            assert value == other, f"{type(ours).__name__}.{key}: {value!r} != {other!r}"


BUILD_CONFIGS = [
    dict(),
    dict(do_sample=True, top_k=50),
    dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1),
    dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=0.05, typical_p=0.8, epsilon_cutoff=0.01,
         eta_cutoff=0.02, top_h=0.5),
    dict(do_sample=True, num_beams=3, top_k=4, top_p=0.5, min_p=0.1),
    dict(num_beams=2, no_repeat_ngram_size=2, encoder_no_repeat_ngram_size=2, encoder_repetition_penalty=1.2,
         bad_words_ids=[[5], [6, 7], [2]], sequence_bias={(9,): 1.0}, min_length=12, min_new_tokens=3),
    dict(forced_bos_token_id=1, forced_eos_token_id=[2, 3], remove_invalid_values=True, max_length=12,
         exponential_decay_length_penalty=(3, 1.2), suppress_tokens=[4, 5], begin_suppress_tokens=[6]),
    dict(renormalize_logits=True, do_sample=True, top_k=10,
         watermarking_config=dict(greenlist_ratio=0.5, seeding_scheme="selfhash", context_width=2)),
    dict(guidance_scale=1.5, repetition_penalty=0.9),
]


def _hf_list(kwargs, **call):
    config = transformers.GenerationConfig(**{"num_beams": 1, "num_return_sequences": 1, **kwargs})
    config._eos_token_tensor = torch.tensor(EOS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _model()._get_logits_processor(config, **call)


def _pd_list(kwargs, **call):
    config = GenerationConfig(**{"num_beams": 1, "num_return_sequences": 1, **kwargs})
    config._eos_token_tensor = torch.tensor(EOS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.build_logits_processor_list(config, model=_model(), **call)


@pytest.mark.parametrize("kwargs", BUILD_CONFIGS)
def test_build_list_matches_transformers(kwargs):
    ids = _ids()
    call = dict(
        input_ids_seq_length=1 if "forced_bos_token_id" in kwargs else L,
        encoder_input_ids=ids,
        prefix_allowed_tokens_fn=_allowed if kwargs.get("num_beams") == 2 else None,
        model_kwargs={"attention_mask": (ids != 0).long()},
        device="cpu",
    )
    theirs, ours = _hf_list(kwargs, **call), _pd_list(kwargs, **call)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs]
    for mine, other in zip(ours, theirs):
        _same_processor(mine, other)
    # And the built lists process the same scores the same way.
    if "guidance_scale" not in kwargs:
        scores = _rows("random")
        assert_same(ours(ids, scores.clone()), theirs(ids, scores.clone()), what=f"list output for {kwargs}")


def test_build_list_merges_user_processors_like_transformers(caplog):
    kwargs = dict(do_sample=True, top_k=5, repetition_penalty=1.2, no_repeat_ngram_size=2)
    user_rep_hf = hf.RepetitionPenaltyLogitsProcessor(2.0)
    user_topk_hf = hf.TopKLogitsWarper(3)
    user_other = hf.InfNanRemoveLogitsProcessor()
    user = [user_topk_hf, user_rep_hf, user_other]
    theirs = _hf_list(kwargs, input_ids_seq_length=L, logits_processor=user)
    with caplog.at_level(logging.WARNING, logger="pydecode.generation.processors"):
        ours = _pd_list(kwargs, input_ids_seq_length=L, logits_processor=user)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs]
    # The user's transformers repetition penalty replaced the built-in one, in its position.
    assert ours[0] is user_rep_hf and theirs[0] is user_rep_hf
    assert ours[2] is user_topk_hf and ours[3] is user_other
    assert "will take precedence" in caplog.text
    # A user processor of the pydecode class replaces the built-in one too.
    mine = pd.NoRepeatNGramLogitsProcessor(3)
    merged = _pd_list(kwargs, input_ids_seq_length=L, logits_processor=[mine])
    assert merged[1] is mine and len(merged) == 3


def test_build_list_presence_frequency_and_warnings():
    ours = _pd_list(dict(repetition_penalty=1.1, presence_penalty=0.5, frequency_penalty=0.2), input_ids_seq_length=L)
    assert [type(p).__name__ for p in ours] == [
        "RepetitionPenaltyLogitsProcessor", "PresencePenaltyLogitsProcessor", "FrequencyPenaltyLogitsProcessor",
    ]
    assert ours[1].prompt_length == L and ours[2].penalty == 0.2
    config = GenerationConfig(encoder_repetition_penalty=1.5, num_beams=1)
    with pytest.warns(UserWarning, match="encoder_repetition_penalty"):
        assert len(pd.build_logits_processor_list(config, input_ids_seq_length=L)) == 0
    with pytest.raises(ValueError, match="model"):
        pd.build_logits_processor_list(GenerationConfig(guidance_scale=2.0))
    wm = GenerationConfig(watermarking_config=WatermarkingConfig(seeding_scheme="pydecode-hash"))
    built = pd.build_logits_processor_list(wm, input_ids_seq_length=L, model=_model())
    assert type(built[0]) is pd.WatermarkLogitsProcessor and built[0].vocab_size == V
