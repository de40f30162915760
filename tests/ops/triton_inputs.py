"""Inputs and the exactness check shared by the Triton tests of the exact ops (penalties, n-gram /
sequence bias, watermark): tests/ops/test_{penalties,ngram,watermark}_triton.py.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (tests/conftest.py sets it); with a GPU the
``gpu``-marked tests run them compiled, at full shapes, against the reference on the same device.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from pydecode.ops import backend_unavailable_reason
from tests.helpers import assert_same

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GPU_SHAPES = [(1, 32000), (7, 128256), (33, 152064), (64, 32000), (64, 152064)]
KINDS = 8


_CPU_WHY = backend_unavailable_reason("triton", torch.device("cpu"))
# The small-shape tests run on CPU tensors through the interpreter (the normal CI run) and, with
# the `gpu` marker, on CUDA tensors through the compiled kernels (`pytest -m gpu` on a GPU host).
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(bool(_CPU_WHY), reason=f"triton on CPU: {_CPU_WHY}")),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


def make_logits(batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32,
                device: str = "cpu") -> torch.Tensor:
    """Rows cycling through 8 kinds: random (with +-0.0 and subnormals), peaked, flat, tied,
    half -inf, all -inf, NaN, and +-inf entries; cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    x[:, ::5] = 0.0
    x[:, 1::7] = -0.0
    x[:, 2::11] = 1e-40  # float32 subnormal (0 in half precision)
    for b in range(batch):
        kind = b % KINDS
        if kind == 1 and vocab:
            x[b, int(torch.randint(0, vocab, (1,), generator=g))] = 30.0
        elif kind == 2:
            x[b] = 0.5
        elif kind == 3:
            x[b] = torch.tensor([-1.0, 0.0, 1.5])[torch.randint(0, 3, (vocab,), generator=g)]
        elif kind == 4:
            x[b, torch.rand(vocab, generator=g) < 0.5] = -math.inf
        elif kind == 5:
            x[b] = -math.inf
        elif kind == 6:
            x[b, ::3] = math.nan
        elif kind == 7:
            x[b, ::4] = math.inf
            x[b, 1::4] = -math.inf
    return x.to(dtype).to(device)


def make_ids(batch: int, seq: int, vocab: int, seed: int, *, pool: int = 16, device: str = "cpu") -> torch.Tensor:
    """``(batch, seq)`` int64 ids with many repeats (a small pool), the edges 0 and ``vocab - 1``,
    and a few ids at or past ``vocab`` (never banned; the penalty ops take them with
    ``out_of_vocab="ignore"``)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, max(1, min(vocab, pool)), (batch, seq), generator=g)
    if seq:
        ids[:, ::3] = torch.randint(0, vocab + 3, (batch, len(range(0, seq, 3))), generator=g)
        ids[:, 0] = 0
        ids[:, -1] = vocab - 1
        if seq > 4:
            ids[:, seq // 2] = vocab
    return ids.clamp(min=0).to(device)


def strided(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The same values with other strides: rows of a wider buffer, every other row, column-major."""
    if mode == "wide":
        wide = torch.full((x.shape[0], x.shape[1] + 5), 7.0, dtype=x.dtype, device=x.device)
        wide[:, 2 : 2 + x.shape[1]] = x
        return wide[:, 2 : 2 + x.shape[1]]
    if mode == "every_other":
        buf = torch.zeros((2 * x.shape[0], x.shape[1]), dtype=x.dtype, device=x.device)
        buf[::2] = x
        return buf[::2]
    return x.t().contiguous().t()


def assert_exact(actual: torch.Tensor, expected: torch.Tensor, what: str = "values") -> None:
    """float32 results equal bit for bit, NaN payloads aside (NaN must meet NaN; zeros keep their sign)."""
    assert actual.dtype == torch.float32 and expected.dtype == torch.float32, what
    assert actual.is_contiguous(), f"{what}: the result must be contiguous"
    assert_same(actual, expected, what=what)
    keep = ~torch.isnan(expected)
    assert_same(actual.contiguous().view(torch.int32)[keep], expected.contiguous().view(torch.int32)[keep],
                what=f"{what} (bits)")


def check(fn: Callable[..., torch.Tensor], *args: Any, what: str = "", **kwargs: Any) -> torch.Tensor:
    """Run ``fn`` on the triton backend and on the torch reference; assert exact equality."""
    got = fn(*args, **kwargs, backend="triton")
    expected = fn(*args, **kwargs, backend="torch")
    assert_exact(got, expected, what=what or getattr(fn, "__name__", "op"))
    return got
