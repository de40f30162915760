"""transformers' TextStreamer / TextIteratorStreamer work unchanged with pydecode.generate."""

from __future__ import annotations

import threading

import pytest
import torch

transformers = pytest.importorskip("transformers")

from pydecode.generation.generate import generate  # noqa: E402

from .test_stopping import _tiny_tokenizer  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: intra-op thread fork/join costs more than the work (and stalls on a loaded machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer, vocab = _tiny_tokenizer()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, eos_token_id=0, pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval(), tokenizer


@pytest.mark.parametrize("extra", [{}, {"prompt_lookup_num_tokens": 2}], ids=["greedy", "prompt_lookup"])
def test_text_iterator_streamer(model_and_tokenizer, extra):
    model, tokenizer = model_and_tokenizer
    prompt = torch.tensor([[3, 4, 5, 3, 4]])
    kw = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=12, eos_token_id=99, **extra)
    streamer = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True)
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=generate(model, prompt, streamer=streamer, **kw)))
    thread.start()
    text = "".join(streamer)  # ends when generate calls streamer.end()
    thread.join()
    out = result["out"]
    assert torch.equal(out, model.generate(prompt, **kw))
    assert text == tokenizer.decode(out[0, prompt.shape[1]:])


def test_text_streamer_prints_prompt_and_tokens(model_and_tokenizer, capsys):
    model, tokenizer = model_and_tokenizer
    prompt = torch.tensor([[3, 4, 5]])
    out = generate(model, prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, eos_token_id=99,
                   streamer=transformers.TextStreamer(tokenizer))
    assert capsys.readouterr().out == tokenizer.decode(out[0]) + "\n"
