"""The triton backend of the watermark ops (triton_kernels/watermark.py) against the torch
references, bit for bit: pydecode's hash scheme (greenlist tested in registers) and the scatter
half of transformers' schemes; under the interpreter on CPU at small shapes, compiled on a GPU
(``gpu`` marker) at small and full shapes."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import watermark as W
from tests.ops.triton_inputs import _CPU_WHY, DEVICES, DTYPES, GPU_SHAPES, assert_exact, check, make_logits, strided


def green_ids(batch: int, vocab: int, width: int, seed: int, device: str = "cpu") -> torch.Tensor:
    """Per row: distinct ids in [0, vocab) (0 and vocab - 1 included where they fit) then -1
    padding; row 1 lists one id four times (a scatter-add: four additions)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((batch, width), -1, dtype=torch.int64)
    for b in range(batch):
        n = int(torch.randint(0, min(width, vocab) + 1, (1,), generator=g)) if b else min(width, vocab)
        ids[b, :n] = torch.randperm(vocab, generator=g)[:n]
    if batch > 1 and width >= 4:
        ids[1, :4] = ids[1, 0].clamp(min=0)
    return ids.to(device)


def _hash_cases(logits: torch.Tensor, what: str) -> None:
    batch, vocab = logits.shape
    g = torch.Generator().manual_seed(vocab)
    ids = torch.randint(-5, 2**40, (batch, 4), generator=g).to(logits.device)  # hashed by their low word
    ratios = (torch.rand(batch, generator=g, dtype=torch.float64) * 0.98 + 0.01).to(logits.device)
    biases = (torch.randn(batch, generator=g) * 3).to(logits.device)
    check(W.watermark_bias_hash, logits, ids, greenlist_ratio=0.25, bias=2.0, what=f"hash {what}")
    check(W.watermark_bias_hash, logits, ids.int(), greenlist_ratio=ratios, bias=biases, hashing_key=2**63 - 1,
          context_width=3, what=f"hash per-row {what}")


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 111), (33, 1000)])
def test_watermark_ops_match_reference(dev: str, dtype: torch.dtype, shape: tuple[int, int]) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch * 7 + vocab, dtype=dtype, device=dev)
    _hash_cases(logits, f"{shape} {dtype}")
    ids = green_ids(batch, vocab, max(4, vocab // 4), seed=vocab, device=dev)
    per_row = torch.linspace(-2, 2, batch, device=dev)
    for bias in (2.0, per_row, 0.0):  # 0.0: subnormal logits must survive the addition
        check(W.watermark_scatter_bias, logits, ids, bias, what=f"scatter {shape} {dtype}")
        check(W.watermark_scatter_bias, logits, ids.int(), bias, what=f"scatter int32 {shape} {dtype}")


@pytest.mark.parametrize("dev", DEVICES)
def test_watermark_greenlists_strides_and_transformers_schemes(dev: str) -> None:
    batch, vocab = 6, 5003
    # The greenlist read back from the output is the detector's (hash_greenlist_mask).
    zeros = torch.zeros(batch, vocab, device=dev)
    ids = torch.randint(0, vocab, (batch, 5)).to(dev)
    ratios = torch.tensor([1e-3, 0.1, 0.25, 0.5, 0.9, 0.999], dtype=torch.float64, device=dev)
    got = W.watermark_bias_hash(zeros, ids, greenlist_ratio=ratios, bias=1.0, context_width=2, hashing_key=42,
                                backend="triton")
    mask = W.hash_greenlist_mask(ids[:, 3:], vocab, greenlist_ratio=ratios, hashing_key=42)
    assert torch.equal(got == 1.0, mask)
    logits = make_logits(batch, vocab, seed=1, device=dev)
    for mode in ("wide", "every_other", "column_major"):
        x = strided(logits.bfloat16(), mode)
        check(W.watermark_bias_hash, x, ids.t().contiguous().t(), context_width=2, what=f"hash {mode}")
        check(W.watermark_scatter_bias, x, green_ids(batch, vocab, 700, seed=2, device=dev)[:, ::2], 0.75,
              what=f"scatter {mode}")
    check(W.watermark_scatter_bias, logits, torch.empty(batch, 0, dtype=torch.int64, device=dev), 1.0, what="no ids")
    check(W.watermark_bias_hash, logits[:1].expand(batch, -1), ids, what="stride-0 rows")
    for scheme in ("lefthash", "selfhash"):
        check(W.watermark_bias_hf, logits, ids, vocab_size=vocab - 3, seeding_scheme=scheme, context_width=2,
              what=scheme)


@pytest.mark.parametrize("dev", DEVICES)
def test_watermark_batch_1024(dev: str) -> None:
    logits = make_logits(1024, 37, seed=3, dtype=torch.float16, device=dev)
    _hash_cases(logits, "batch 1024")
    check(W.watermark_scatter_bias, logits, green_ids(1024, 37, 9, seed=4, device=dev), 1.25, what="scatter 1024")


def test_watermark_hash_thresholds_at_the_extremes() -> None:
    """Thresholds straight to the kernel: <= 0 makes nothing green, >= 2**32 everything."""
    if _CPU_WHY:
        pytest.skip(f"triton on CPU: {_CPU_WHY}")
    from pydecode.triton_kernels.watermark import watermark_hash_bias_triton
    logits = make_logits(4, 300, seed=5)
    prev = torch.zeros(4, 1, dtype=torch.int64)
    bias = torch.full((4,), 1.5)
    for thresholds, green in (([0, -5, -(2**40), 0], False), ([2**32, 2**32 + 1, 2**40, 2**62], True)):
        out = watermark_hash_bias_triton(logits, prev, torch.tensor(thresholds), bias, 7)
        assert_exact(out, logits + 1.5 if green else logits.clone(), what=f"green={green}")


# --------------------------------------------------------------------------- full shapes on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_watermark_full_shapes_gpu(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype, device="cuda")
    _hash_cases(logits, f"{shape} {dtype}")
    ids = green_ids(batch, vocab, vocab // 4, seed=vocab, device="cuda")
    check(W.watermark_scatter_bias, logits, ids, torch.linspace(-3, 3, batch, device="cuda"),
          what=f"scatter {shape} {dtype}")
