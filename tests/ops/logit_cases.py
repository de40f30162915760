"""Inputs and the exactness check of the CUDA tests of the penalties, ngram and watermark
families (tests/ops/test_{penalties,ngram,watermark}_cuda.py)."""

from __future__ import annotations

import math

import torch

from tests.helpers import assert_same

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Full shapes (the GPU team's grid: batch 1/7/33/64, vocab 32000/128256/152064), one pairing each.
BIG_SHAPES = [(1, 152064), (7, 32000), (33, 128256), (64, 152064)]
# Small shapes for the sanitizer run: vocab below / not a multiple of a 16-byte vector, one block.
SMALL_SHAPES = [(1, 1), (3, 3), (9, 111), (5, 1031)]


def make_logits(batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32,
                device: str = "cuda") -> torch.Tensor:
    """Rows of 6 kinds, cycling: random with +-0.0 and subnormals, all -inf, NaN entries, +-inf
    entries, half -inf, flat. Built on CPU (same values whatever the device), cast, then moved."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    x[:, ::5] = 0.0
    x[:, 1::7] = -0.0
    x[:, 2::11] = 1e-40  # float32 subnormal (flushed to 0 by fp16/bf16 casts: still a valid input)
    for b in range(batch):
        kind = b % 6
        if kind == 1:
            x[b] = -math.inf
        elif kind == 2:
            x[b, ::3] = math.nan
        elif kind == 3:
            x[b, ::4] = math.inf
            x[b, 1::4] = -math.inf
        elif kind == 4:
            x[b, torch.rand(vocab, generator=g) < 0.5] = -math.inf
        elif kind == 5:
            x[b] = 0.5
    return x.to(dtype).to(device)


def make_ids(batch: int, seq: int, high: int, seed: int, dtype: torch.dtype = torch.int64,
             device: str = "cuda") -> torch.Tensor:
    """Ids with many repeats (a small pool), spread ids, and a few ids >= high (never touched; the
    penalty ops take them with ``out_of_vocab="ignore"``)."""
    g = torch.Generator().manual_seed(seed)
    if seq == 0:
        return torch.zeros(batch, 0, dtype=dtype, device=device)
    ids = torch.randint(0, max(1, min(high, 16)), (batch, seq), generator=g)
    ids[:, ::3] = torch.randint(0, high, (batch, len(range(0, seq, 3))), generator=g)
    ids[:, ::17] = high + torch.randint(0, 3, (batch, len(range(0, seq, 17))), generator=g)
    return ids.to(dtype).to(device)


def assert_exact(actual: torch.Tensor, expected: torch.Tensor, what: str = "values") -> None:
    """Equal values (NaN where NaN) and the same sign on zeros: bit-exact up to NaN payloads."""
    assert actual.dtype == expected.dtype == torch.float32, f"{what}: dtypes {actual.dtype}, {expected.dtype}"
    assert_same(actual, expected, what=what)
    a, e = actual.detach().cpu(), expected.detach().cpu()
    zeros = (a == 0) & (e == 0)
    bad = zeros & (torch.signbit(a) != torch.signbit(e))
    assert not bool(bad.any()), f"{what}: {int(bad.sum())} zeros differ in sign, first at {bad.nonzero()[0].tolist()}"
