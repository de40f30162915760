"""WatermarkDetector: equal to transformers' detector in HF-exact mode, both directions, and the hash scheme."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers.generation.logits_process import WatermarkLogitsProcessor as HFWatermarkProcessor  # noqa: E402
from transformers.generation.watermarking import WatermarkDetector as HFWatermarkDetector  # noqa: E402

import pydecode.ops as ops  # noqa: E402
from pydecode.generation.config import WatermarkingConfig  # noqa: E402
from pydecode.generation.watermark_detector import WatermarkDetector  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: intra-op thread fork/join costs more than the work (and stalls on a loaded machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

VOCAB = 211
BOS = 1


class _ModelConfig:
    vocab_size = VOCAB
    bos_token_id = BOS
    is_encoder_decoder = False
    decoder_start_token_id = None


def _pydecode_processor(config: dict):
    """pydecode's watermark processor (proc's class when present, else the op it wraps)."""
    try:
        from pydecode.generation.processors import WatermarkLogitsProcessor
    except ImportError:
        WatermarkLogitsProcessor = None
    if WatermarkLogitsProcessor is not None:
        return WatermarkLogitsProcessor(vocab_size=VOCAB, device="cpu", **config)
    if config["seeding_scheme"] == "pydecode-hash":
        kw = {k: config[k] for k in ("greenlist_ratio", "bias", "hashing_key", "context_width")}
        return lambda ids, scores: ops.watermark_bias_hash(scores, ids, **kw)
    return lambda ids, scores: ops.watermark_bias_hf(scores, ids, vocab_size=VOCAB, **config)


def _generate(processor, steps=48, batch=3, seed=0):
    """Sample from a fixed bigram "model" whose logits pass through ``processor`` (None: unwatermarked)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(VOCAB, VOCAB, generator=gen) * 2.0
    ids = torch.cat([torch.full((batch, 1), BOS), torch.randint(2, VOCAB, (batch, 2), generator=gen)], dim=1)
    for _ in range(steps):
        scores = table[ids[:, -1]]
        if processor is not None:
            scores = processor(ids, scores)
        nxt = torch.multinomial(scores.softmax(-1), 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def _assert_same(ours, ref):
    for field in ("num_tokens_scored", "num_green_tokens", "green_fraction", "z_score", "p_value", "prediction",
                  "confidence"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(ref, field), err_msg=field)


@pytest.mark.parametrize(
    "config",
    [
        dict(seeding_scheme="lefthash", context_width=1, greenlist_ratio=0.25, bias=4.0, hashing_key=15485863),
        dict(seeding_scheme="selfhash", context_width=2, greenlist_ratio=0.5, bias=4.0, hashing_key=7),
    ],
    ids=["lefthash", "selfhash"],
)
def test_hf_schemes_both_directions(config):
    hf_detector = HFWatermarkDetector(_ModelConfig(), "cpu", dict(config))
    ours = WatermarkDetector(_ModelConfig(), "cpu", WatermarkingConfig(**config))
    texts = {
        "hf": _generate(HFWatermarkProcessor(vocab_size=VOCAB, device="cpu", **config)),
        "pydecode": _generate(_pydecode_processor(config)),
        "plain": _generate(None),
    }
    # pydecode's processor is bit-exact with transformers' on CPU, so the same text comes out.
    assert torch.equal(texts["hf"], texts["pydecode"])
    for name, ids in texts.items():
        for ignore in (False, True):
            hf_detector.ignore_repeated_ngrams = ours.ignore_repeated_ngrams = ignore
            got = ours(ids, return_dict=True)
            _assert_same(got, hf_detector(ids, return_dict=True))
            if name == "plain":
                assert not got.prediction.any() and (np.abs(got.z_score) < 3).all()
            else:
                assert got.prediction.all() and (got.z_score > 4).all()
    assert np.array_equal(ours(texts["hf"], z_threshold=1e9), np.zeros(3, dtype=bool))


def test_hash_scheme_detected():
    config = dict(seeding_scheme="pydecode-hash", context_width=2, greenlist_ratio=0.25, bias=4.0, hashing_key=99)
    detector = WatermarkDetector(_ModelConfig(), "cpu", config)
    marked = _generate(_pydecode_processor(config), steps=64)
    plain = _generate(None, steps=64)
    out = detector(marked, return_dict=True)
    assert out.prediction.all() and (out.z_score > 5).all()
    assert (out.p_value < 1e-6).all() and np.allclose(out.confidence, 1 - out.p_value)
    out_plain = detector(plain, return_dict=True)
    assert not out_plain.prediction.any() and (np.abs(out_plain.z_score) < 3).all()
    # Independent count: token t is scored against the greenlist of tokens t-2, t-1 (BOS dropped).
    body = marked[:, 1:]
    for b in range(body.shape[0]):
        green = sum(
            bool(ops.hash_greenlist_mask(body[b : b + 1, t - 2 : t], VOCAB, greenlist_ratio=0.25, hashing_key=99)[
                0, body[b, t]])
            for t in range(2, body.shape[1])
        )
        assert out.num_green_tokens[b] == green and out.num_tokens_scored[b] == body.shape[1] - 2
    # A different key sees no watermark.
    other = WatermarkDetector(_ModelConfig(), "cpu", {**config, "hashing_key": 100})
    assert not other(marked).any()


def test_bad_input():
    with pytest.raises(ValueError, match="seeding_scheme"):
        WatermarkDetector(_ModelConfig(), "cpu", {"seeding_scheme": "nope"})
    with pytest.raises(ValueError, match="greenlist_ratio"):
        WatermarkDetector(_ModelConfig(), "cpu", {"greenlist_ratio": 1.0})
    with pytest.raises(TypeError, match="unknown keys"):
        WatermarkDetector(_ModelConfig(), "cpu", {"gamma": 0.5})
    detector = WatermarkDetector(_ModelConfig(), "cpu", WatermarkingConfig())
    with pytest.raises(ValueError, match="at least `1` token"):
        detector(torch.tensor([[BOS, 5]]))
    with pytest.raises(ValueError, match="inconsistent leading BOS"):
        detector(torch.tensor([[BOS, 5, 6], [4, 5, 6]]))
    with pytest.raises(ValueError, match="2-D integer"):
        detector(torch.tensor([1.0, 2.0]))
