"""The cpu backend of the watermark ops (csrc/cpu/watermark.cpp) against the torch references, bit
for bit: the pydecode-hash bias (greenlists identical to hash_greenlist_mask) and the HF-exact
scatter of a precomputed greenlist."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import WatermarkLogitsProcessor

from pydecode import _ext
from pydecode.ops import _cpu
from pydecode.ops.watermark import (
    hash_greenlist_mask,
    watermark_bias_hash,
    watermark_bias_hf,
    watermark_scatter_bias,
)
from tests.helpers import assert_same, row_kinds

if _ext.cpu_module() is None:
    pytest.skip(f"the CPU module is not built: {_ext.cpu_unavailable_reason()}", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (batch, vocab): batch 1 to 64, vocab 1 to 262144 with odd sizes; one or a few long rows are cut
# into slices across threads.
SHAPES = [(1, 1), (3, 1), (1, 7), (9, 111), (64, 50), (8, 5003), (2, 32000), (3, 128256 + 7), (1, 262144)]
KINDS = 8


def make_logits(batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return row_kinds(batch, vocab, seed, dtype, kinds=KINDS)


def assert_bits(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """float32, equal bit for bit (sign of zero and NaN payloads included)."""
    assert actual.dtype == torch.float32 and expected.dtype == torch.float32, what
    assert actual.shape == expected.shape, what
    assert_same(actual.contiguous().view(torch.int32), expected.contiguous().view(torch.int32), what=what)


# --------------------------------------------------------------------------- pydecode-hash
@pytest.mark.parametrize(("batch", "vocab"), SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_hash_bias_matches_reference(batch: int, vocab: int, dtype: torch.dtype) -> None:
    logits = make_logits(batch, vocab, seed=batch * 7 + vocab, dtype=dtype)
    g = torch.Generator().manual_seed(vocab)
    input_ids = torch.randint(-5, 2**40, (batch, 4), generator=g)  # any int64: hashed by their low word
    ratios = torch.rand(batch, generator=g, dtype=torch.float64) * 0.98 + 0.01
    biases = torch.randn(batch, generator=g) * 3
    for kw in (
        dict(greenlist_ratio=0.25, bias=2.0, hashing_key=15485863, context_width=1),
        dict(greenlist_ratio=ratios, bias=biases, hashing_key=2**63 - 1, context_width=3),
    ):
        got = watermark_bias_hash(logits, input_ids, backend="cpu", **kw)
        expected = watermark_bias_hash(logits, input_ids, backend="torch", **kw)
        assert_bits(got, expected, f"{dtype} {kw['context_width']}")


def test_hash_greenlists_are_the_reference_ones() -> None:
    """Membership read back from the output equals hash_greenlist_mask, the detector's list."""
    batch, vocab = 6, 50021
    logits = torch.zeros(batch, vocab)
    input_ids = torch.randint(0, vocab, (batch, 5))
    ratios = torch.tensor([1e-3, 0.1, 0.25, 0.5, 0.9, 0.999], dtype=torch.float64)
    for width in (1, 2, 5):
        got = watermark_bias_hash(logits, input_ids, greenlist_ratio=ratios, bias=1.0, context_width=width,
                                  hashing_key=42, backend="cpu")
        mask = hash_greenlist_mask(input_ids[:, 5 - width:], vocab, greenlist_ratio=ratios, hashing_key=42)
        assert_same(got == 1.0, mask, what=f"greenlist width={width}")
        # about ratio * vocab green tokens per row
        assert bool(((mask.sum(1) / vocab - ratios.float()).abs() < 0.01).all())


def test_hash_bias_strided_inputs() -> None:
    base = make_logits(8, 2 * 20001, seed=1)
    ids = torch.randint(0, 20001, (8, 6)).T.contiguous().T  # column-major input ids
    for logits in (base[:, ::2], base[::2, 3:20004], base[0:1, :20001].expand(8, 20001)):
        got = watermark_bias_hash(logits, ids[: logits.shape[0]], context_width=2, backend="cpu")
        expected = watermark_bias_hash(logits, ids[: logits.shape[0]], context_width=2, backend="torch")
        assert_bits(got, expected, f"strides {logits.stride()}")


def test_hash_short_context_and_extreme_thresholds() -> None:
    logits = make_logits(4, 3001, seed=2)
    ids = torch.randint(0, 3001, (4, 1))
    # Shorter than the context: unchanged (the public op returns before any backend runs).
    assert_bits(watermark_bias_hash(logits, ids, context_width=2, backend="cpu"), logits, "short context")
    # Thresholds outside (0, 2^32) straight to the kernel: <= 0 none green, >= 2^32 all green.
    m = _cpu.module()
    prev = torch.zeros(4, 1, dtype=torch.int64)
    bias = torch.full((4,), 1.5)
    out = torch.empty(4, 3001)
    for thresholds, green in (([0, -5, -(2**40), 0], False), ([2**32, 2**32 + 1, 2**40, 2**62], True)):
        thr = torch.tensor(thresholds, dtype=torch.int64)
        m.watermark_hash_bias(logits.data_ptr(), 0, 4, 3001, 3001, prev.data_ptr(), 1, thr.data_ptr(),
                              bias.data_ptr(), 7, out.data_ptr())
        assert_bits(out, logits + 1.5 if green else logits, f"green={green}")


# --------------------------------------------------------------------------- HF-exact scatter
def make_green_ids(batch: int, vocab: int, width: int, seed: int) -> torch.Tensor:
    """Per row: distinct ids in [0, vocab) then -1 padding; row 1 repeats ids (a scatter-add)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((batch, width), -1, dtype=torch.int64)
    for b in range(batch):
        n = int(torch.randint(0, min(width, vocab) + 1, (1,), generator=g))
        ids[b, :n] = torch.randperm(vocab, generator=g)[:n]
    if batch > 1 and width >= 4:
        ids[1, :4] = ids[1, 0].clamp(min=0)
    return ids


@pytest.mark.parametrize(("batch", "vocab"), SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_bias_matches_reference(batch: int, vocab: int, dtype: torch.dtype) -> None:
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype)
    ids = make_green_ids(batch, vocab, max(4, vocab // 4), seed=vocab)
    biases = torch.randn(batch) * 2
    for id_dtype in (torch.int64, torch.int32):
        for bias in (2.0, biases):
            got = watermark_scatter_bias(logits, ids.to(id_dtype), bias, backend="cpu")
            expected = watermark_scatter_bias(logits, ids.to(id_dtype), bias, backend="torch")
            assert_bits(got, expected, f"{dtype} ids {id_dtype}")


def test_scatter_bias_strided_and_empty_ids() -> None:
    logits = make_logits(6, 4000, seed=3)[:, ::2]  # (6, 2000), stride 2
    ids = make_green_ids(6, 2000, 300, seed=3)
    for green in (ids.T.contiguous().T, ids[:, ::3], torch.empty(6, 0, dtype=torch.int64), ids[:, :1]):
        got = watermark_scatter_bias(logits, green, 0.75, backend="cpu")
        expected = watermark_scatter_bias(logits, green, 0.75, backend="torch")
        assert_bits(got, expected, f"ids strides {green.stride()}")


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_hf_scheme_end_to_end_matches_transformers(scheme: str) -> None:
    batch, vocab = 5, 3001
    logits = torch.randn(batch, vocab) * 3
    input_ids = torch.randint(0, vocab, (batch, 4))
    processor = WatermarkLogitsProcessor(vocab, "cpu", 0.25, 2.0, 15485863, scheme, 2)
    expected = processor(input_ids, logits.clone())
    got = watermark_bias_hf(logits, input_ids, vocab_size=vocab, seeding_scheme=scheme, context_width=2,
                            backend="cpu")
    assert_bits(got, expected, scheme)


# --------------------------------------------------------------------------- malformed calls
def test_malformed_calls_raise_value_error() -> None:
    m = _cpu.module()
    x = torch.zeros(2, 10)
    out = torch.empty(2, 10)
    bias = torch.zeros(2)
    prev = torch.zeros(2, 1, dtype=torch.int64)
    thr = torch.zeros(2, dtype=torch.int64)
    ids = torch.tensor([[0, 9, -1], [3, -1, -1]])
    hash_good = dict(logits=x.data_ptr(), dtype=0, rows=2, vocab=10, row_stride=10, prev_tokens=prev.data_ptr(),
                     n_prev=1, threshold=thr.data_ptr(), bias=bias.data_ptr(), hashing_key=1, out=out.data_ptr())
    m.watermark_hash_bias(**hash_good)
    for change in (dict(rows=-1), dict(vocab=-1), dict(row_stride=-1), dict(n_prev=-1), dict(dtype=5),
                   dict(logits=0), dict(prev_tokens=0), dict(threshold=0), dict(bias=0), dict(out=0),
                   dict(vocab=2**32 + 1, rows=1)):
        with pytest.raises(ValueError):
            m.watermark_hash_bias(**{**hash_good, **change})
    scatter_good = dict(logits=x.data_ptr(), dtype=0, rows=2, vocab=10, row_stride=10, green_ids=ids.data_ptr(),
                        ids_int64=True, n_ids=3, ids_row_stride=3, bias=bias.data_ptr(), out=out.data_ptr())
    m.watermark_scatter_bias(**scatter_good)
    for change in (dict(rows=-1), dict(vocab=-1), dict(row_stride=-1), dict(n_ids=-1), dict(ids_row_stride=-1),
                   dict(dtype=-1), dict(logits=0), dict(green_ids=0), dict(bias=0), dict(out=0), dict(vocab=9)):
        with pytest.raises(ValueError):
            m.watermark_scatter_bias(**{**scatter_good, **change})
    for bad_id in (10, 2**40, -2, -(2**40)):
        bad = ids.clone()
        bad[1, 1] = bad_id
        with pytest.raises(ValueError, match="green_ids"):
            m.watermark_scatter_bias(**{**scatter_good, "green_ids": bad.data_ptr()})
    # int32 ids are read as int32
    ids32 = torch.tensor([[0, 10, -1], [3, -1, -1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="green_ids"):
        m.watermark_scatter_bias(**{**scatter_good, "green_ids": ids32.data_ptr(), "ids_int64": False})
