"""pydecode.generate's API edges: bad input fails before any model call, streamers, the plain-PyTorch
protocol."""

from __future__ import annotations

import inspect

import pytest
import torch

import pydecode

from ._generate_models import (
    VOCAB,
    one_thread,  # noqa: F401 (autouse fixture)
    prompts,
    tiny_model,
)


class _CountCalls:
    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


BAD_INPUTS = [
    ({"num_beams": 2, "num_return_sequences": 3}, ValueError, "num_return_sequences"),  # validate() error
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"do_sample": True, "temperature": -1.0}, ValueError, "temperature"),
    ({"max_length": 4}, ValueError, "max_length"),  # prompt (6) longer than max_length
    ({"sampling_backend": "fast"}, ValueError, "sampling_backend"),
    ({"seed": torch.tensor([1, 2])}, ValueError, "seed"),  # 4 rows need 4 seeds
    ({"seed": 1, "generator": torch.Generator()}, ValueError, "seed"),
    ({"generator": 3}, TypeError, "generator"),
    ({"not_an_argument": 1}, ValueError, "not_an_argument"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS])
def test_bad_input_raises_before_any_model_call(kwargs, error, match):
    model = tiny_model("llama")
    ids, mask = prompts(4)
    with _CountCalls(model) as counter, pytest.raises(error, match=match):
        pydecode.generate(model, ids, attention_mask=mask, pad_token_id=0, **kwargs)
    assert counter.calls == 0


def test_mismatched_batch_sizes_raise_before_any_model_call():
    model = tiny_model("llama")
    ids, mask = prompts(4)
    with _CountCalls(model) as counter:
        with pytest.raises(ValueError, match="attention_mask"):
            pydecode.generate(model, ids, attention_mask=mask[:3], max_new_tokens=4, pad_token_id=0)
        with pytest.raises(ValueError, match="negative_prompt_ids"):
            pydecode.generate(model, ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0,
                              guidance_scale=1.5, negative_prompt_ids=ids[:2])
    assert counter.calls == 0
    with pytest.raises(TypeError, match="generation_config"):
        pydecode.generate(model, ids, generation_config={"max_new_tokens": 3})
    with pytest.raises(TypeError, match="model"):
        pydecode.generate(object(), ids)


class _Recorder:
    """A streamer recording what it receives (transformers' BaseStreamer protocol)."""

    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        self.puts.append(value.clone())

    def end(self):
        self.ended += 1


def test_streamer_receives_prompt_then_tokens_then_end_like_transformers():
    model = tiny_model("llama")
    ids, _ = prompts(1)
    theirs, ours = _Recorder(), _Recorder()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=6, pad_token_id=0, streamer=theirs)
    out = pydecode.generate(model, ids, max_new_tokens=6, pad_token_id=0, streamer=ours)
    assert ours.ended == theirs.ended == 1
    assert len(ours.puts) == len(theirs.puts) == 7
    for a, b in zip(ours.puts, theirs.puts):
        assert torch.equal(a, b)
    assert torch.equal(torch.cat([p.reshape(1, -1) for p in ours.puts], dim=1), out)


def test_transformers_text_streamer_works_unchanged():
    from transformers import TextIteratorStreamer

    class _Tok:  # the two methods TextStreamer uses
        def decode(self, ids, **kwargs):
            return " ".join(str(int(i)) for i in ids)

    model = tiny_model("gpt2")
    ids, _ = prompts(1)
    streamer = TextIteratorStreamer(_Tok(), skip_prompt=True)
    out = pydecode.generate(model, ids, max_new_tokens=5, pad_token_id=0, eos_token_id=None, streamer=streamer)
    text = "".join(streamer)
    assert text.split() == [str(int(t)) for t in out[0, ids.shape[1]:]]


class _StepFn:
    """The plain-PyTorch protocol around a transformers model (DynamicCache as the cache)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids, cache):
        from transformers import DynamicCache

        cache = DynamicCache() if cache is None else cache
        # transformers 5.2x renamed the forward argument `past_key_values` to `cache`.
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        out = self.model(input_ids=input_ids, use_cache=True, **{name: cache})
        return out.logits[:, -1], cache


@pytest.mark.parametrize("extra", [{}, {"num_beams": 3, "num_return_sequences": 2}, {"repetition_penalty": 1.4}])
def test_plain_pytorch_protocol_matches_transformers(extra):
    model = tiny_model("llama")
    ids = torch.randint(3, VOCAB, (2, 5), generator=torch.Generator().manual_seed(4))
    kw = dict(max_new_tokens=7, pad_token_id=0, eos_token_id=2, **extra)
    with torch.no_grad():
        expected = model.generate(ids, **kw)
    got = pydecode.generate(_StepFn(model), ids, generation_config=pydecode.GenerationConfig(**kw))
    assert torch.equal(got, expected)


def test_plain_protocol_without_cache_and_bad_inputs():
    model = tiny_model("gpt2")

    def no_cache(input_ids, cache):
        return model(input_ids=input_ids, use_cache=False).logits, None

    ids = torch.randint(3, VOCAB, (2, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=5, pad_token_id=0, eos_token_id=None)
    assert torch.equal(pydecode.generate(no_cache, ids, max_new_tokens=5, pad_token_id=0), expected)
    with pytest.raises(ValueError, match="max_length"):
        pydecode.generate(no_cache, ids, max_length=3)
    with pytest.raises(ValueError, match="attention mask"):
        pydecode.generate(no_cache, ids, attention_mask=torch.ones_like(ids), max_new_tokens=2)
    with pytest.raises(TypeError, match="inputs"):
        pydecode.generate(no_cache, ids.float(), max_new_tokens=2)
    with pytest.raises(TypeError, match="step function"):
        pydecode.generate(lambda i, c: i, ids, max_new_tokens=2)


def test_fast_step_inputs_equal_the_models_own_preparation(monkeypatch):
    """The runner's shortcut for prepare_inputs_for_generation builds the same forward arguments."""
    from pydecode.generation.runner import HFModelRunner

    original = HFModelRunner._fast_inputs
    checked = []

    def checking(self, input_ids):
        fast = original(self, input_ids)
        reference = self.model.prepare_inputs_for_generation(input_ids, next_sequence_length=1, **self.kwargs)
        assert fast.keys() == reference.keys()
        for key, value in reference.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(fast[key], value) and fast[key].is_contiguous() == value.is_contiguous(), key
            else:
                assert fast[key] is value or fast[key] == value, key
        checked.append(True)
        return fast

    monkeypatch.setattr(HFModelRunner, "_fast_inputs", checking)
    ids, mask = prompts(4)
    for kind in ("llama", "gpt2"):
        pydecode.generate(tiny_model(kind), ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0, num_beams=2)
        pydecode.generate(tiny_model(kind), ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
    assert len(checked) >= 12


def test_result_is_an_ordinary_tensor():
    # The loop runs under inference mode when nothing but the ids is returned; the ids are copied out.
    model = tiny_model("llama")
    ids, mask = prompts(2)
    out = pydecode.generate(model, ids, attention_mask=mask, max_new_tokens=3, pad_token_id=0)
    assert not out.is_inference()
    out[:, 0] = 1  # in-place use outside inference mode must work
