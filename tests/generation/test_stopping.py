"""Stopping criteria against transformers 5.24's classes and `_get_stopping_criteria`."""

from __future__ import annotations

import time

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers.generation import stopping_criteria as hf  # noqa: E402

from pydecode.generation import stopping as pd  # noqa: E402
from pydecode.generation.config import GenerationConfig  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: intra-op thread fork/join costs more than the work (and stalls on a loaded machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_tokenizer():
    """A byte-level BPE tokenizer over a hand-written vocabulary (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
    for w in ["st", "op", "sto", "pper", "las", "topper", "stop", "at", "opera", "to", "pped", "Ġstop", "Ġ", "end"]:
        vocab[w] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>"), vocab


@pytest.fixture(scope="module")
def tiny_llama():
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=48,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def test_classes_match_transformers():
    ids = torch.randint(0, 20, (6, 9))
    ids[1, -1] = 3
    ids[2, -2] = 7
    for length in (8, 9, 10):
        assert torch.equal(pd.MaxLengthCriteria(length)(ids, None), hf.MaxLengthCriteria(length)(ids, None))
    for eos in (3, [3, 7], torch.tensor([7, 19])):
        for n in (1, 2, 4):
            ours = pd.EosTokenCriteria(eos)(ids, None, new_token_length=n)
            assert torch.equal(ours, hf.EosTokenCriteria(eos)(ids, None, new_token_length=n))
            assert ours.dtype == torch.bool and ours.shape == (6,)
    start = time.time()
    for max_time, t0 in ((0.0, start - 1.0), (100.0, start)):
        assert torch.equal(pd.MaxTimeCriteria(max_time, t0)(ids, None), hf.MaxTimeCriteria(max_time, t0)(ids, None))
    scores = (torch.randn(1, 20),)
    for threshold in (0.0, 0.5, 1.0):
        assert pd.ConfidenceCriteria(threshold)(ids[:1], scores) == hf.ConfidenceCriteria(threshold)(ids[:1], scores)


def test_eos_hit_is_device_side_and_rejects_bad_ids():
    tokens = torch.tensor([5, 2, 9])
    assert pd.eos_hit(tokens, torch.tensor([2, 9])).tolist() == [False, True, True]
    assert pd.eos_hit(tokens, None).tolist() == [False, False, False]
    assert pd.eos_hit(torch.tensor([[1, 2], [3, 4]]), torch.tensor([1])).tolist() == [True, False]
    with pytest.raises(TypeError, match="eos_token_id"):
        pd.EosTokenCriteria(2.0)
    with pytest.raises(TypeError, match="eos_token_id"):
        pd.EosTokenCriteria(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="eos_token_id"):
        pd.EosTokenCriteria(torch.ones(2, 2, dtype=torch.long))


def test_stop_strings_match_transformers():
    tokenizer, vocab = _tiny_tokenizer()
    ours = pd.StopStringCriteria(tokenizer, ["stop", "end"])
    ref = hf.StopStringCriteria(tokenizer, ["stop", "end"])
    cases = [["st", "op"], ["las", "topper"], ["s", "to", "pped"], ["stop", "at"], ["st", "op", "at"],
             ["a", "e", "n", "d"], ["end", "a"], ["Ġstop"], ["x", "y"]]
    width = max(len(c) for c in cases)
    # right-aligned rows (the criterion reads the end of each row); pad on the left with "a"
    batch = torch.tensor([[vocab["a"]] * (width - len(c)) + [vocab[w] for w in c] for c in cases])
    got = ours(batch, None)
    assert torch.equal(got, ref(batch, None))
    assert got.tolist() == [True, True, True, False, False, True, False, True, False]
    with pytest.raises(ValueError, match="stop_strings"):
        pd.StopStringCriteria(tokenizer, [])
    with pytest.raises(ValueError, match="tokenizer"):
        pd.StopStringCriteria(None, "stop")


def _describe(criteria):
    out = []
    for c in criteria:
        attrs = {k: v for k, v in vars(c).items() if k not in ("initial_timestamp", "_impl", "embedding_vec")}
        attrs = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in attrs.items()}
        out.append((type(c).__name__, attrs.get("max_length"), attrs.get("max_time"), attrs.get("eos_token_id"),
                    attrs.get("max_position_embeddings"), attrs.get("assistant_confidence_threshold"),
                    tuple(getattr(c, "stop_strings", ()))))
    return out


@pytest.mark.parametrize(
    "fields",
    [
        dict(max_length=20),
        dict(max_length=30, max_time=5.0, eos_token_id=[2, 5]),
        dict(max_new_tokens=4, eos_token_id=3, stop_strings=["stop", "end"]),
        dict(max_length=12, is_assistant=True, assistant_confidence_threshold=0.3),
    ],
)
def test_build_matches_get_stopping_criteria(tiny_llama, fields):
    tokenizer, _ = _tiny_tokenizer()
    hf_cfg = transformers.GenerationConfig(**fields)
    if hf_cfg.max_length is None or "max_new_tokens" in fields:
        hf_cfg.max_length = 7 + fields.get("max_new_tokens", 0)
    if hf_cfg.eos_token_id is not None:
        hf_cfg._eos_token_tensor = torch.tensor(hf_cfg.eos_token_id).reshape(-1)
    else:
        hf_cfg._eos_token_tensor = None
    user = [hf.MaxLengthCriteria(99)] if "max_time" in fields else []
    ref = tiny_llama._get_stopping_criteria(hf_cfg, hf.StoppingCriteriaList(user), tokenizer=tokenizer)
    ours = pd.build_stopping_criteria(
        GenerationConfig.from_transformers(hf_cfg) if hasattr(GenerationConfig, "from_transformers") else hf_cfg,
        user, tokenizer, max_position_embeddings=tiny_llama.config.max_position_embeddings,
        eos_token_tensor=hf_cfg._eos_token_tensor,
    )
    assert _describe(ours) == _describe(ref)
    if user:  # the user's transformers MaxLengthCriteria replaced the built-in one, in place
        assert ours[0] is user[0]
    ids = torch.randint(0, 40, (3, 11))
    ids[0, -1] = 5
    if "is_assistant" not in fields:
        assert torch.equal(ours(ids, None), ref(ids, None))


def test_build_requires_tokenizer_for_stop_strings():
    with pytest.raises(ValueError, match="tokenizer"):
        pd.build_stopping_criteria(GenerationConfig(max_length=5, stop_strings="x"))


def test_merge_appends_user_criteria_in_order():
    class Never(hf.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    user = [Never(), pd.EosTokenCriteria([9])]
    built = pd.build_stopping_criteria(GenerationConfig(max_length=5, eos_token_id=2), user)
    assert [type(c) for c in built] == [pd.MaxLengthCriteria, pd.EosTokenCriteria, Never]
    assert built[1] is user[1]


def test_plan_equals_list():
    class LastIsOdd(hf.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] % 2 == 1

    criteria = pd.StoppingCriteriaList(
        [hf.MaxLengthCriteria(12), pd.MaxTimeCriteria(100.0), hf.EosTokenCriteria([4, 6]), pd.EosTokenCriteria(8)]
    )
    plan = pd.StoppingPlan(criteria)
    assert plan.max_length == 12 and plan.eos_token_ids.tolist() == [4, 6, 8] and not plan.other
    torch.manual_seed(1)
    for length in (5, 11, 12):
        ids = torch.randint(0, 10, (8, length))
        for n in (1, 3):
            assert torch.equal(plan(ids, None, new_token_length=n), criteria(ids, None, new_token_length=n))
    with_user = pd.StoppingPlan(list(criteria) + [LastIsOdd()])
    assert len(with_user.other) == 1
    ids = torch.randint(0, 10, (8, 6))
    assert torch.equal(with_user(ids, None), pd.StoppingCriteriaList(list(criteria) + [LastIsOdd()])(ids, None))
    expired = pd.StoppingPlan([pd.MaxTimeCriteria(0.0, initial_timestamp=time.time() - 1)])
    assert expired.host_done(3) and expired(ids, None).all()


def test_validate_stopping_criteria():
    got = pd.validate_stopping_criteria(pd.StoppingCriteriaList(), 10)
    assert got.max_length == 10
    with pytest.warns(UserWarning, match="different `max_length`"):
        pd.validate_stopping_criteria(pd.StoppingCriteriaList([pd.MaxLengthCriteria(5)]), 10)


def test_generate_with_stop_strings_and_user_criteria():
    """End to end through pydecode.generate: stop strings (with the tokenizer) and a user criterion."""
    from pydecode.generation.generate import generate

    tokenizer, vocab = _tiny_tokenizer()
    torch.manual_seed(3)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, eos_token_id=0, pad_token_id=0,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    prompt = torch.tensor([[3, 4, 5], [6, 7, 8]])
    kw = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=20, eos_token_id=99, do_sample=False)
    with torch.no_grad():
        free = model.generate(prompt, **kw)
        # A stop string made of the last generated characters of row 0, so row 0 stops early.
        text = tokenizer.decode(free[0, 3:9])
        stop = text[-2:]
        ref = model.generate(prompt, stop_strings=[stop], tokenizer=tokenizer, **kw)
        ours = generate(model, prompt, stop_strings=[stop], tokenizer=tokenizer, **kw)

        class AfterFive(hf.StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 8, dtype=torch.bool)

        ref_user = model.generate(prompt, stopping_criteria=hf.StoppingCriteriaList([AfterFive()]), **kw)
        ours_user = generate(model, prompt, stopping_criteria=[AfterFive()], **kw)
    assert torch.equal(ours, ref) and ours.shape[1] < free.shape[1]
    assert torch.equal(ours_user, ref_user) and ours_user.shape[1] == 8
    with pytest.raises(ValueError, match="tokenizer"):
        generate(model, prompt, stop_strings=["ab"], **kw)


def test_exported_from_pydecode_generation():
    import pydecode.generation as generation

    assert generation.StoppingCriteriaList is pd.StoppingCriteriaList
    assert generation.build_stopping_criteria is pd.build_stopping_criteria
    assert "WatermarkDetector" in generation.__all__ and generation.WatermarkDetector.__name__ == "WatermarkDetector"
