"""End to end through the Triton kernels: with ``PYDECODE_BACKEND=triton`` (CPU tensors, the
interpreter; tests/conftest.py sets ``TRITON_INTERPRET=1`` without a GPU), ``pydecode.generate`` on
tiny random models gives transformers' tokens for greedy and beam search, and every op of every
decoding step runs on the triton backend (an op without a triton kernel would raise)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import pydecode
from pydecode.ops import backend_unavailable_reason, registered_ops

from ._generate_models import count_backend_calls, frequent_tokens, prompts, tiny_model

pytestmark = pytest.mark.skipif(
    bool(backend_unavailable_reason("triton", torch.device("cpu"))),
    reason=f"triton on CPU tensors: {backend_unavailable_reason('triton', torch.device('cpu'))}",
)
FULL = {"return_dict_in_generate": True, "output_scores": True}


@pytest.fixture
def triton_calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Force the triton backend and count (op, backend) of every op call generate makes."""
    monkeypatch.setenv("PYDECODE_BACKEND", "triton")
    return count_backend_calls(monkeypatch)


def _generate_both(model, ids, mask, **kw):
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=mask, **kw)
    got = pydecode.generate(model, ids, attention_mask=mask, **kw)
    assert torch.equal(got.sequences, expected.sequences), (got.sequences, expected.sequences)
    assert len(got.scores) == len(expected.scores)
    for ours, theirs in zip(got.scores, expected.scores):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    if expected.get("beam_indices") is not None:
        assert torch.equal(got.beam_indices, expected.beam_indices)
    return got


def _steps(got, prompt_len: int, encoder_decoder: bool) -> int:
    return got.sequences.shape[1] - (1 if encoder_decoder else prompt_len)


def test_greedy_through_triton_kernels(triton_calls: Counter) -> None:
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    got = _generate_both(
        model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0, repetition_penalty=1.3,
        no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8]], sequence_bias={(11,): -2.0, (3, 4): 1.5}, **FULL,
    )
    steps = _steps(got, ids.shape[1], False)
    assert steps >= 2
    assert set(backend for _, backend in triton_calls) == {"triton"}, triton_calls
    for op in ("no_repeat_ngram_mask", "sequence_bias"):
        assert triton_calls[(op, "triton")] >= steps, (op, triton_calls)
    penalties = triton_calls[("apply_penalties_state", "triton")] + triton_calls[("apply_penalties", "triton")]
    assert penalties >= steps, triton_calls


def test_greedy_encoder_decoder_through_triton_kernels(triton_calls: Counter) -> None:
    model = tiny_model("bart")
    ids, mask = prompts(2)
    got = _generate_both(
        model, ids, mask, max_new_tokens=8, pad_token_id=0, encoder_repetition_penalty=1.4,
        encoder_no_repeat_ngram_size=2, repetition_penalty=1.2, **FULL,
    )
    steps = _steps(got, ids.shape[1], True)
    assert set(backend for _, backend in triton_calls) == {"triton"}, triton_calls
    for op in ("encoder_repetition_penalty", "encoder_no_repeat_ngram_mask"):
        assert triton_calls[(op, "triton")] >= steps, (op, triton_calls)


def test_beam_search_through_triton_kernels(triton_calls: Counter) -> None:
    if "triton" not in registered_ops().get("beam_topk", ()):
        pytest.skip("beam_topk has no triton kernel yet (pydecode.triton_kernels)")
    model = tiny_model("llama")
    ids, mask = prompts(4)
    eos = list(frequent_tokens("llama", 2))
    _generate_both(
        model, ids, mask, max_new_tokens=8, num_beams=3, eos_token_id=eos, pad_token_id=0, repetition_penalty=1.3,
        no_repeat_ngram_size=2, **FULL,
    )
    assert set(backend for _, backend in triton_calls) == {"triton"}, triton_calls
    assert triton_calls[("beam_topk", "triton")] >= 1 and triton_calls[("no_repeat_ngram_mask", "triton")] >= 1
