"""The cpu backend of the n-gram ops (csrc/cpu/ngram.cpp) against the torch references, bit for
bit: no-repeat n-grams, encoder no-repeat n-grams, sequence bias and bad words."""

from __future__ import annotations

import math

import pytest
import torch

from pydecode import _ext
from pydecode.ops import _cpu
from pydecode.ops import ngram as N
from tests.helpers import assert_same, row_kinds

if _ext.cpu_module() is None:
    pytest.skip(f"the CPU module is not built: {_ext.cpu_unavailable_reason()}", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Batch-1 rows of 2^19 + 3 are split across the threads (2^18 elements per chunk at least).
SHAPES = [(1, 1), (3, 2), (1, 7), (9, 111), (64, 50), (8, 5003), (2, 32000), (3, 128256), (1, 262144),
          (1, 2**19 + 3)]


# --------------------------------------------------------------------------- inputs
def make_logits(batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return row_kinds(batch, vocab, seed, dtype)


def make_ids(batch: int, seq: int, vocab: int, seed: int, pool: int = 6) -> torch.Tensor:
    """Ids from a small pool (so n-grams repeat) shifted per row, some >= vocab."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, pool, (batch, seq), generator=g) + torch.randint(0, vocab + 2, (batch, 1), generator=g)
    return ids


def both(fn, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    out = fn(*args, **kwargs, backend="cpu")
    assert out.dtype == torch.float32 and out.is_contiguous()
    return out, fn(*args, **kwargs, backend="torch")


# --------------------------------------------------------------------------- no-repeat n-gram
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_repeat_ngram_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=vocab + batch, dtype=dtype)
    for seq in (0, 1, 3, 40):
        ids = make_ids(batch, seq, vocab, seed=seq)
        for n in (1, 2, 3, 4):
            assert_same(*both(N.no_repeat_ngram_mask, logits, ids, n), what=f"{shape} seq={seq} n={n}")


def test_no_repeat_ngram_long_history_strided_int32() -> None:
    logits = make_logits(8, 3001, seed=1)
    ids = make_ids(8, 1024, 3001, seed=2, pool=4)
    buffer = torch.zeros(8, 1100, dtype=torch.int32)
    buffer[:, :1024] = ids
    wide = torch.zeros(8, 3010)
    wide[:, 3:3004] = logits
    for n in (2, 3, 5):
        out, ref = both(N.no_repeat_ngram_mask, wide[:, 3:3004], buffer[:, :1024], n)
        assert_same(out, ref, what=f"n={n}")
        assert bool(torch.isinf(out).any())  # the small pool makes matches happen
    assert_same(*both(N.no_repeat_ngram_mask, logits.t().contiguous().t(), ids, 3))
    assert_same(*both(N.no_repeat_ngram_mask, logits[:1].expand(4, -1), ids[:1].expand(4, -1), 2))


# --------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("shape", [(1, 7), (6, 111), (12, 5003), (4, 128256), (1, 2**19 + 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_encoder_no_repeat_ngram_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=vocab, dtype=dtype)
    for enc_rows in sorted({1, batch // 2 or 1, batch}):
        if batch % enc_rows:
            continue
        enc = make_ids(enc_rows, 30, vocab, seed=enc_rows, pool=4)
        for seq in (0, 1, 2, 9):
            # Decoder ids from the encoder's pool so that suffixes match encoder n-grams.
            ids = enc.repeat_interleave(batch // enc_rows, 0)[:, :seq].flip(1)
            for n in (1, 2, 3, 31):
                assert_same(
                    *both(N.encoder_no_repeat_ngram_mask, logits, ids, enc, n), what=f"{shape} {enc_rows} {seq} {n}"
                )
    assert_same(*both(N.encoder_no_repeat_ngram_mask, logits, ids, enc[0], 2))


# --------------------------------------------------------------------------- sequence bias
def _table_inputs(batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(vocab, 5), (batch, 12), generator=g)
    top = vocab - 1
    bias = {
        (0,): 1.5, (top,): -2.25, (1,): -0.0, (2,): 0.0,
        (3, 1): 0.5, (4, 1): math.inf, (0, 3, 1): -1.0, (1, 2, 3, 4, 0): 2.0,  # several end in token 1
        (2, 2): -math.inf, (4,): 0.125, (3, 4, top): 7.0,
        (0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4): 3.0,  # longer than the history
    }
    bias = {k: v for k, v in bias.items() if max(k) < vocab}
    # Plant the prefixes at the end of some rows.
    for b in range(0, batch, 3):
        prefix = [(3,), (0, 3), (1, 2, 3, 4), (2,), (3, 4)][b % 5]
        ids[b, 12 - len(prefix) :] = torch.tensor(prefix)
    return ids, bias


@pytest.mark.parametrize("shape", [(1, 5), (9, 111), (33, 5003), (2, 128256), (1, 262144), (1, 2**19 + 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch * vocab, dtype=dtype)
    ids, bias = _table_inputs(batch, vocab, seed=vocab)
    table = N.SequenceBiasTable.from_sequence_bias(bias)
    for input_ids in (ids, ids.int(), ids[:, :2], ids[:, :0], ids - 7):  # negatives are only compared
        assert_same(*both(N.sequence_bias, logits, input_ids, table), what=f"{shape} {tuple(input_ids.shape)}")
    assert_same(*both(N.sequence_bias, logits.t().contiguous().t(), ids, [[[0], 1.0], [[3, 1], 2.0]]))
    words = [[k for k in key] for key in bias]
    assert_same(*both(N.bad_words_mask, logits, ids, words, eos_token_id=0), what="bad words")


def test_sequence_bias_only_singles_or_only_longer() -> None:
    logits = make_logits(10, 300, seed=3)
    ids = make_ids(10, 20, 300, seed=4)
    assert_same(*both(N.sequence_bias, logits, ids, {(5,): 1.0, (7,): -0.5}))
    assert_same(*both(N.sequence_bias, logits, ids, {(int(ids[0, -1]), 9): -3.0}))
    # EOS filtering leaves nothing to ban: an empty table.
    assert_same(*both(N.bad_words_mask, logits, ids, [[2]], eos_token_id=2))


# --------------------------------------------------------------------------- malformed calls
def test_compiled_ngram_functions_refuse_malformed_calls() -> None:
    mod = _cpu.module()
    logits, out = torch.zeros(2, 10), torch.empty(2, 10)
    ids = torch.tensor([[1, 2, 1, 2], [3, 4, 3, 4]])
    neg = torch.tensor([[1, 2, 1, -2], [3, 4, 3, 4]])
    neg32 = neg.int()  # kept alive: the kernel reads it through its address
    base = dict(logits=logits.data_ptr(), dtype=0, batch=2, vocab=10, logits_stride=10, out=out.data_ptr(),
                ids=ids.data_ptr(), ids64=True, seq=4, ids_stride=4)
    mod.no_repeat_ngram_mask(**base, ngram_size=2)
    for override, n in [(dict(), 0), (dict(), -1), (dict(batch=-1), 2), (dict(seq=-1), 2), (dict(ids=0), 2),
                        (dict(out=0), 2), (dict(dtype=7), 2), (dict(ids_stride=-4), 2), (dict(ids=neg.data_ptr()), 2),
                        (dict(ids=neg32.data_ptr(), ids64=False), 1)]:
        with pytest.raises(ValueError):
            mod.no_repeat_ngram_mask(**{**base, **override}, ngram_size=n)

    enc = torch.tensor([[1, 2, 5]])
    enc_neg = torch.tensor([[1, 2, -5]])
    enc_args = dict(enc=enc.data_ptr(), enc64=True, enc_rows=1, enc_len=3, enc_stride=3)
    mod.encoder_no_repeat_ngram_mask(**base, **enc_args, ngram_size=2)
    for override, n in [(dict(), 0), (dict(enc_rows=3), 2), (dict(enc_rows=0), 2), (dict(enc_len=-1), 2),
                        (dict(enc=0), 2), (dict(enc=enc_neg.data_ptr()), 2)]:
        with pytest.raises(ValueError):
            mod.encoder_no_repeat_ngram_mask(**base, **{**enc_args, **override}, ngram_size=n)

    single, single_b = torch.tensor([1, 2]), torch.tensor([1.0, 2.0])
    prefixes, last, biases = torch.tensor([[2]]), torch.tensor([3]), torch.tensor([0.5])
    table = dict(single_ids=single.data_ptr(), single_biases=single_b.data_ptr(), n_single=2,
                 prefixes=prefixes.data_ptr(), width=1, last_tokens=last.data_ptr(), biases=biases.data_ptr(),
                 n_long=1)
    mod.sequence_bias(**base, **table)
    too_big, negative = torch.tensor([1, 10]), torch.tensor([-1])
    for override in [dict(n_single=-1), dict(n_long=-1), dict(width=-1), dict(single_ids=0), dict(prefixes=0),
                     dict(last_tokens=0), dict(biases=0), dict(single_ids=too_big.data_ptr()),
                     dict(last_tokens=negative.data_ptr())]:
        with pytest.raises(ValueError):
            mod.sequence_bias(**base, **{**table, **override})
