"""The cuda backend of the ngram ops (csrc/cuda/ngram.cu) against the torch references on the
same CUDA tensors, bit for bit, and against the cpu backend. GPU only (`gpu` marker); tests named
`big` run the full shapes and are left out of the compute-sanitizer run."""

from __future__ import annotations

import math

import pytest
import torch

from pydecode import _ext
from pydecode.ops import ngram as N
from tests.ops.logit_cases import BIG_SHAPES, DTYPES, SMALL_SHAPES, assert_exact, make_ids, make_logits

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _need_cuda_module() -> None:
    if not torch.cuda.is_available() or _ext.cuda_module() is None:
        pytest.skip(f"the CUDA module cannot run here: {_ext.cuda_unavailable_reason()}")


def _both(fn, *args, **kwargs):
    return fn(*args, backend="cuda", **kwargs), fn(*args, backend="torch", **kwargs)


def _repeating_ids(batch: int, seq: int, vocab: int, seed: int, pool: int = 4) -> torch.Tensor:
    """Ids from a small pool (so n-grams repeat and get banned), a few >= vocab."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(pool, vocab), (batch, seq), generator=g)
    ids[:, 5::13] = vocab + 1
    return ids.to("cuda")


def _check_ngrams(batch: int, vocab: int, dtype: torch.dtype, seq: int) -> None:
    logits = make_logits(batch, vocab, batch + vocab, dtype)
    ids = _repeating_ids(batch, seq, vocab, vocab)
    for n in (1, 2, 3, 5, seq, seq + 1):
        got, want = _both(N.no_repeat_ngram_mask, logits, ids, n)
        assert_exact(got, want, f"no_repeat n={n}")
    enc_rows = 1 if batch == 1 else next(r for r in (3, 2, 1) if batch % r == 0)
    enc = _repeating_ids(enc_rows, 40, vocab, vocab + 1)
    dec = enc.repeat_interleave(batch // enc_rows, 0)[:, :9].flip(1).contiguous()
    for n in (1, 2, 3, 10, 41):
        got, want = _both(N.encoder_no_repeat_ngram_mask, logits, dec, enc, n)
        assert_exact(got, want, f"encoder n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_ngram_masks_equal_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_ngrams(*shape, dtype, seq=30)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_big_ngram_masks_equal_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_ngrams(*shape, dtype, seq=1024)


def test_ngram_masks_strided_int32_and_cpu() -> None:
    base = make_logits(6, 2 * 3001, 5)
    ids = _repeating_ids(6, 200, 3001, 6).int().t().contiguous().t()
    for logits in (base[:, ::2], base[:, 1:3002], base[:1, 3:3004].expand(6, -1)):
        got, want = _both(N.no_repeat_ngram_mask, logits, ids, 3)
        assert_exact(got, want, f"strides {logits.stride()}")
        cpu = N.no_repeat_ngram_mask(logits.cpu(), ids.cpu(), 3, backend="cpu")
        assert_exact(got, cpu.cuda(), "cuda vs cpu")
    got, want = _both(N.encoder_no_repeat_ngram_mask, base[:, 1:3002], ids[:, :7], ids[0, :150], 2)
    assert_exact(got, want, "encoder, one prompt")


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
    for b in range(0, batch, 3):  # plant the prefixes at the end of some rows
        prefix = [(3,), (0, 3), (1, 2, 3, 4), (2,), (3, 4)][b % 5]
        ids[b, 12 - len(prefix):] = torch.tensor(prefix)
    return ids.to("cuda"), bias


def _check_bias(batch: int, vocab: int, dtype: torch.dtype) -> None:
    logits = make_logits(batch, vocab, batch * 3 + vocab, dtype)
    ids, bias = _table_inputs(batch, vocab, vocab)
    table = N.SequenceBiasTable.from_sequence_bias(bias, device="cuda")
    for input_ids in (ids, ids.int(), ids[:, :2], ids[:, :0], ids - 7):  # negatives are only compared
        got, want = _both(N.sequence_bias, logits, input_ids, table)
        assert_exact(got, want, f"sequence_bias {tuple(input_ids.shape)}")
    words = [list(key) for key in bias]
    got, want = _both(N.bad_words_mask, logits, ids, words, eos_token_id=0)
    assert_exact(got, want, "bad words")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_sequence_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_bias(*shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_big_sequence_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_bias(*shape, dtype)


def test_sequence_bias_sums_in_table_order() -> None:
    # Three matched sequences and a single on token 9: float32 addition is not associative, and
    # the reference on CPU adds in table order (torch's CUDA index_add_ uses atomics, any order).
    logits = torch.zeros(2, 20, device="cuda")
    ids = torch.tensor([[6, 8, 7], [1, 8, 7]], device="cuda")
    bias = {(9,): 1.0, (7, 9): 1e8, (8, 7, 9): -1e8, (6, 8, 7, 9): 0.5, (5,): -0.0}
    table = N.SequenceBiasTable.from_sequence_bias(bias, device="cuda")
    got = N.sequence_bias(logits, ids, table, backend="cuda")
    want = N.sequence_bias(logits.cpu(), ids.cpu(), N.SequenceBiasTable.from_sequence_bias(bias), backend="torch")
    assert_exact(got, want.cuda(), "table order")
    assert got[0, 9].item() == 0.5 and got[1, 9].item() == 0.0


def test_sequence_bias_many_entries_and_cached_order() -> None:
    g = torch.Generator().manual_seed(8)
    vocab = 5003
    words = [[int(t) for t in torch.randint(0, vocab, (int(n),), generator=g)]
             for n in torch.randint(1, 4, (2000,), generator=g)]
    table = N.SequenceBiasTable.from_bad_words(words, device="cuda")
    logits = make_logits(33, vocab, 9, torch.bfloat16)
    ids = make_ids(33, 50, vocab, 10)
    ids[::2, -2:] = torch.tensor(words[5][:2] if len(words[5]) > 2 else [1, 2], device="cuda")
    for _ in range(2):  # the second call reuses the cached entry order
        got, want = _both(N.bad_words_mask, logits, ids, table)
        assert_exact(got, want, "2000 bad words")
    cpu = N.bad_words_mask(logits.cpu(), ids.cpu(), N.SequenceBiasTable.from_bad_words(words), backend="cpu")
    assert_exact(got, cpu.cuda(), "cuda vs cpu")
