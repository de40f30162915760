"""Tiny random transformers models for the generate parity tests (built from configs, no downloads)."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
import torch

VOCAB = 96


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: intra-op thread fork/join dominates each op (and stalls on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def tiny_model(kind: str):
    """A seeded 2-layer model: "llama", "gpt2", "qwen2" or "bart" (encoder-decoder)."""
    import transformers as tf

    torch.manual_seed({"llama": 0, "gpt2": 1, "qwen2": 2, "bart": 3}[kind])
    common = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if kind == "llama":
        config = tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=128, **common)
        model = tf.LlamaForCausalLM(config)
    elif kind == "gpt2":
        config = tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        model = tf.GPT2LMHeadModel(config)
    elif kind == "qwen2":
        config = tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=128, **common)
        model = tf.Qwen2ForCausalLM(config)
    elif kind == "bart":
        config = tf.BartConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                               max_position_embeddings=128, decoder_start_token_id=2, forced_eos_token_id=None,
                               **common)
        model = tf.BartForConditionalGeneration(config)
    else:
        raise ValueError(kind)
    # Sharpen the output distribution so greedy / beam choices are not near-ties.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    return model.eval()


def prompts(batch: int, length: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts (pad id 0): row i has i pad tokens (batch 1: no padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(batch):
        mask[i, : min(i, length - 2)] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


@functools.cache
def frequent_tokens(kind: str, n: int = 3) -> tuple[int, ...]:
    """The tokens greedy search emits most on these prompts: EOS ids that actually stop rows."""
    model = tiny_model(kind)
    ids, mask = prompts(4)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    new = out[:, -16:] if not model.config.is_encoder_decoder else out[:, 1:]
    counts = torch.bincount(new.flatten(), minlength=VOCAB)
    counts[:3] = 0
    return tuple(int(t) for t in counts.argsort(descending=True)[:n])


def count_backend_calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Count (op, backend) of every op call pydecode makes from now on (the dispatcher is spied)."""
    from pydecode.ops import _library, _registry

    calls: Counter = Counter()
    resolve = _library.resolve

    def spy(op: str, device: torch.device, backend=None):  # noqa: ANN001, ANN202
        calls[(op, _registry.resolve_name(op, device, backend))] += 1
        return resolve(op, device, backend)

    monkeypatch.setattr(_library, "resolve", spy)
    return calls
