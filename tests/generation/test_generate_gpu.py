"""End to end on a GPU (``gpu`` marker): ``pydecode.generate`` on tiny random models moved to CUDA,
with every op forced onto the ``cuda`` and then the ``triton`` backend, gives transformers' token
ids for greedy and beam search, and the same sampled tokens as the torch reference backend for the
same seed (the randomness contract: one Philox stream on every backend)."""

from __future__ import annotations

import copy
import functools
from collections import Counter

import pytest
import torch

import pydecode

from ._generate_models import VOCAB, count_backend_calls, frequent_tokens, prompts, tiny_model

pytestmark = pytest.mark.gpu
FULL = {"return_dict_in_generate": True, "output_scores": True}
BACKENDS = ["cuda", "triton"]


@functools.cache
def cuda_model(kind: str):
    return copy.deepcopy(tiny_model(kind)).to("cuda")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    return count_backend_calls(monkeypatch)


def unpadded_prompts(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts without padding: the GPU host's transformers (5.17) penalises a left-padded row's pad
    token where 5.24 does not, so padded rows would test the version difference, not the kernels
    (padding is covered against the pinned transformers by the CPU parity suite)."""
    ids = torch.randint(3, VOCAB, (batch, 6), generator=torch.Generator().manual_seed(0))
    return ids.cuda(), torch.ones_like(ids).cuda()


def _parity(kind: str, batch: int, backend: str, calls: Counter, monkeypatch: pytest.MonkeyPatch, **kw):
    model = cuda_model(kind)
    ids, mask = unpadded_prompts(batch)
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=mask, **kw, **FULL)
    monkeypatch.setenv("PYDECODE_BACKEND", backend)
    got = pydecode.generate(model, ids, attention_mask=mask, **kw, **FULL)
    assert torch.equal(got.sequences, expected.sequences), (got.sequences, expected.sequences)
    for ours, theirs in zip(got.scores, expected.scores):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    if expected.get("beam_indices") is not None:
        assert torch.equal(got.beam_indices, expected.beam_indices)
    used = {b for _, b in calls}
    assert used == {backend}, calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_with_processors_on_gpu(backend: str, calls: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    _parity("llama", 4, backend, calls, monkeypatch, max_new_tokens=10, eos_token_id=list(frequent_tokens("llama", 2)),
            pad_token_id=0, repetition_penalty=1.3, no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8]],
            sequence_bias={(11,): -2.0, (3, 4): 1.5})


@pytest.mark.parametrize("backend", BACKENDS)
def test_beam_search_on_gpu(backend: str, calls: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    _parity("llama", 4, backend, calls, monkeypatch, max_new_tokens=8, num_beams=3, num_return_sequences=2,
            eos_token_id=list(frequent_tokens("llama", 2)), pad_token_id=0, repetition_penalty=1.3,
            no_repeat_ngram_size=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoder_decoder_greedy_on_gpu(backend: str, calls: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    _parity("bart", 2, backend, calls, monkeypatch, max_new_tokens=8, pad_token_id=0,
            encoder_repetition_penalty=1.4, encoder_no_repeat_ngram_size=2, repetition_penalty=1.2)


def test_sampling_same_seed_same_tokens_on_every_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    model = cuda_model("llama")
    ids, mask = (t.cuda() for t in prompts(4))
    kw = dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8, repetition_penalty=1.1, max_new_tokens=12,
              eos_token_id=None, pad_token_id=0, seed=1234)
    tokens = {}
    for backend in ["torch", *BACKENDS]:
        monkeypatch.setenv("PYDECODE_BACKEND", backend)
        tokens[backend] = pydecode.generate(model, ids, attention_mask=mask, **kw)
    for backend in BACKENDS:
        assert torch.equal(tokens[backend], tokens["torch"]), (backend, tokens[backend], tokens["torch"])
