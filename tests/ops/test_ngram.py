"""N-gram bans, sequence bias and bad words against transformers' processors (bit-exact)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    EncoderNoRepeatNGramLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    SequenceBiasLogitsProcessor,
)

from pydecode.ops import ngram as N
from pydecode.ops._registry import BackendUnavailableError
from tests.helpers import assert_same


# --------------------------------------------------------------------------- inputs
def make_logits(batch: int, vocab: int, seed: int, *, bad_rows: bool = True) -> torch.Tensor:
    """Random float32 logits with zeros, ties and, when there are rows to spare, an all -inf
    row, a row with NaNs and a row with -inf entries."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    x[:, ::5] = 0.0
    x[:, 2::4] = 1.5
    if bad_rows and batch >= 4:
        x[1] = -math.inf
        x[2, ::3] = math.nan
        x[3, ::2] = -math.inf
    return x


def make_ids(batch: int, seq: int, high: int, seed: int, *, left_pad: bool = False) -> torch.Tensor:
    """Ids from a small pool (so n-grams repeat), with a planted repeat of the first n-gram at
    the end, and optional left padding (id 0) of different lengths per row."""
    g = torch.Generator().manual_seed(seed)
    pool = max(1, min(high, 6))
    ids = torch.randint(0, pool, (batch, seq), generator=g)
    ids += torch.randint(0, max(1, high - pool + 1), (batch, 1), generator=g)
    if seq >= 6:
        ids[:, -2:] = ids[:, :2]
    if left_pad:
        for b in range(batch):
            ids[b, : b % (seq + 1)] = 0
    return ids


def check_new_float32(out: torch.Tensor, logits: torch.Tensor) -> None:
    assert out.dtype == torch.float32 and out.shape == logits.shape
    assert out is not logits and (logits.numel() == 0 or out.data_ptr() != logits.data_ptr())


def hf(processor, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return processor(ids, logits.float().clone())


# --------------------------------------------------------------------------- no repeat ngram
# (batch, seq, vocab)
NGRAM_SHAPES = [(1, 1, 1), (1, 8, 1), (7, 20, 9), (3, 40, 5000), (2, 0, 10), (4, 12, 4), (5, 3, 30)]


@pytest.mark.parametrize("shape", NGRAM_SHAPES)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_hf(shape: tuple[int, int, int], n: int) -> None:
    batch, seq, vocab = shape
    logits = make_logits(batch, vocab, seed=seq + n)
    for left_pad in (False, True):
        ids = make_ids(batch, seq, vocab + 2, seed=vocab + n, left_pad=left_pad)  # ids >= vocab never banned
        out = N.no_repeat_ngram_mask(logits, ids, n)
        check_new_float32(out, logits)
        assert_same(out, hf(NoRepeatNGramLogitsProcessor(n), ids, logits), what=f"{shape} n={n} pad={left_pad}")


def test_no_repeat_ngram_short_sequence_unchanged() -> None:
    logits = make_logits(3, 10, seed=1)
    ids = make_ids(3, 2, 10, seed=2)
    out = N.no_repeat_ngram_mask(logits, ids, 3)
    check_new_float32(out, logits)
    assert_same(out, logits)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_no_repeat_ngram_low_precision_strided(dtype: torch.dtype) -> None:
    logits = make_logits(7, 200, seed=3).to(dtype)[:, ::2]
    ids = make_ids(7, 30, 100, seed=4)
    out = N.no_repeat_ngram_mask(logits, ids.int(), 2)
    check_new_float32(out, logits)
    assert_same(out, hf(NoRepeatNGramLogitsProcessor(2), ids, logits.contiguous()))
    transposed = make_logits(100, 7, seed=5, bad_rows=False).t()
    assert_same(N.no_repeat_ngram_mask(transposed, ids, 3), hf(NoRepeatNGramLogitsProcessor(3), ids, transposed))


def test_no_repeat_ngram_bad_rows_documented() -> None:
    logits = make_logits(5, 12, seed=6)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0]] * 5)  # n=1 bans everything but nothing else
    out = N.no_repeat_ngram_mask(logits, ids, 1)
    assert bool(torch.isneginf(out).all())  # banned NaN entries become -inf too
    out = N.no_repeat_ngram_mask(logits, torch.tensor([[3, 4, 3]] * 5), 2)  # bans 4 only
    assert bool(torch.isneginf(out[:, 4]).all())
    keep = torch.ones(12, dtype=torch.bool)
    keep[4] = False
    assert_same(out[:, keep], logits[:, keep])


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 4),
    seq=st.integers(0, 14),
    vocab=st.integers(1, 8),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_no_repeat_ngram_property(batch: int, seq: int, vocab: int, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g)
    ids = torch.randint(0, vocab + 1, (batch, seq), generator=g)
    assert_same(N.no_repeat_ngram_mask(logits, ids, n), hf(NoRepeatNGramLogitsProcessor(n), ids, logits))


def test_no_repeat_ngram_errors() -> None:
    logits = make_logits(3, 10, seed=7)
    ids = make_ids(3, 5, 10, seed=8)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="ngram_size"):
            N.no_repeat_ngram_mask(logits, ids, bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="ngram_size"):
            N.no_repeat_ngram_mask(logits, ids, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_ids"):
        N.no_repeat_ngram_mask(logits, ids.float(), 2)
    with pytest.raises(ValueError, match="input_ids"):
        N.no_repeat_ngram_mask(logits, ids[:1], 2)
    with pytest.raises(ValueError, match="input_ids"):
        N.no_repeat_ngram_mask(logits, ids[0], 2)
    with pytest.raises(ValueError, match="input_ids"):
        N.no_repeat_ngram_mask(logits, ids.to("meta"), 2)
    with pytest.raises(ValueError, match="input_ids"):
        N.no_repeat_ngram_mask(logits, ids - 100, 2)
    with pytest.raises(TypeError, match="logits"):
        N.no_repeat_ngram_mask(logits.double(), ids, 2)
    with pytest.raises(BackendUnavailableError, match="no_repeat_ngram_mask"):
        N.no_repeat_ngram_mask(logits, ids, 2, backend="cuda")


# --------------------------------------------------------------------------- encoder no repeat ngram
# (batch, enc_batch, seq, enc_len, vocab)
ENC_SHAPES = [
    (1, 1, 4, 10, 6), (6, 2, 7, 15, 5), (7, 7, 3, 12, 9), (4, 1, 0, 9, 5000), (3, 3, 5, 2, 8), (2, 2, 1, 6, 1)
]


@pytest.mark.parametrize("shape", ENC_SHAPES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_encoder_no_repeat_ngram_matches_hf(shape: tuple[int, int, int, int, int], n: int) -> None:
    batch, enc_batch, seq, enc_len, vocab = shape
    logits = make_logits(batch, vocab, seed=seq + n)
    enc = make_ids(enc_batch, enc_len, vocab, seed=enc_len)
    ids = make_ids(batch, seq, vocab, seed=n)
    if seq >= 3 and enc_len >= 3:
        ids[0, -2:] = enc[0, :2]  # a planted match
    out = N.encoder_no_repeat_ngram_mask(logits, ids, enc, n)
    check_new_float32(out, logits)
    expected = hf(EncoderNoRepeatNGramLogitsProcessor(n, enc), ids, logits)
    assert_same(out, expected, what=f"{shape} n={n}")


def test_encoder_no_repeat_ngram_1d_low_precision_strided() -> None:
    enc = torch.tensor([4, 5, 6, 4, 5, 7, 1])
    ids = torch.tensor([[1, 4, 5], [0, 0, 6], [2, 3, 4]])
    for logits in (make_logits(3, 20, seed=9).half(), make_logits(3, 40, seed=10).bfloat16()[:, ::2]):
        out = N.encoder_no_repeat_ngram_mask(logits, ids, enc, 3)
        assert_same(out, hf(EncoderNoRepeatNGramLogitsProcessor(3, enc), ids, logits.contiguous()))
    out = N.encoder_no_repeat_ngram_mask(make_logits(3, 20, seed=9), ids, enc, 3)
    assert torch.isneginf(out[0]).nonzero().flatten().tolist() == [6, 7]
    assert not bool(torch.isneginf(out[1:]).any())


def test_encoder_no_repeat_ngram_ignores_out_of_vocab() -> None:
    logits = make_logits(2, 10, seed=11, bad_rows=False)
    enc = torch.tensor([[1, 2, 25, 2, 3]])
    out = N.encoder_no_repeat_ngram_mask(logits, torch.tensor([[2], [1]]), enc, 2)
    assert torch.isneginf(out[0]).nonzero().flatten().tolist() == [3]  # 25 ignored
    assert torch.isneginf(out[1]).nonzero().flatten().tolist() == [2]


def test_encoder_no_repeat_ngram_errors() -> None:
    logits = make_logits(6, 10, seed=12)
    ids = make_ids(6, 5, 10, seed=13)
    enc = make_ids(2, 7, 10, seed=14)
    for bad_enc in (make_ids(4, 7, 10, seed=0), make_ids(7, 7, 10, seed=0), enc[:0]):
        with pytest.raises(ValueError, match="encoder_input_ids"):
            N.encoder_no_repeat_ngram_mask(logits, ids, bad_enc, 2)
    with pytest.raises(ValueError, match="encoder_input_ids"):
        N.encoder_no_repeat_ngram_mask(logits, ids, enc - 20, 2)
    with pytest.raises(TypeError, match="encoder_input_ids"):
        N.encoder_no_repeat_ngram_mask(logits, ids, enc.float(), 2)
    with pytest.raises(ValueError, match="encoder_input_ids"):
        N.encoder_no_repeat_ngram_mask(logits, ids, enc.to("meta"), 2)
    with pytest.raises(ValueError, match="input_ids"):
        N.encoder_no_repeat_ngram_mask(logits, ids[:3], enc, 2)
    with pytest.raises(ValueError, match="ngram_size"):
        N.encoder_no_repeat_ngram_mask(logits, ids, enc, 0)


# --------------------------------------------------------------------------- sequence bias
def planted_bias(ids: torch.Tensor, vocab: int, seed: int) -> dict[tuple[int, ...], float]:
    """Sequences of length 1..4, some completing the rows' suffixes, duplicate last tokens,
    interleaved prefix lengths (tests transformers' group order) and order-sensitive sums."""
    rng = np.random.default_rng(seed)
    table: dict[tuple[int, ...], float] = {}
    for _ in range(12):
        length = int(rng.integers(1, 5))
        table[tuple(int(t) for t in rng.integers(0, vocab, length))] = float(rng.normal() * 3)
    if ids.shape[1] >= 3:
        for b in range(ids.shape[0]):
            for k in (1, 2, 3):
                table[tuple(ids[b, ids.shape[1] - k :].tolist()) + (int(rng.integers(0, vocab)),)] = float(rng.normal())
        a, b, c = ids[0, -3:].tolist()
        # all match row 0 and end on token 0, with a sum that depends on the order of addition
        table[(b, c, 0)] = 1e8
        table[(c, 0)] = 1.0
        table[(a, b, c, 0)] = -1e8
        table[(a, b, 0)] = 2.0  # does not match (unless a == b == c)
    return table


SB_SHAPES = [(1, 5, 3), (7, 12, 9), (3, 30, 5000), (2, 0, 10), (4, 2, 6), (5, 8, 1)]


@pytest.mark.parametrize("shape", SB_SHAPES)
def test_sequence_bias_matches_hf(shape: tuple[int, int, int]) -> None:
    batch, seq, vocab = shape
    logits = make_logits(batch, vocab, seed=seq)
    ids = make_ids(batch, seq, vocab, seed=vocab, left_pad=True)
    table = planted_bias(ids, vocab, seed=batch)
    expected = hf(SequenceBiasLogitsProcessor(dict(table)), ids, logits)
    out = N.sequence_bias(logits, ids, table)
    check_new_float32(out, logits)
    assert_same(out, expected, what=f"dict {shape}")
    as_list = [[list(k), v] for k, v in table.items()]
    assert_same(N.sequence_bias(logits, ids, as_list), hf(SequenceBiasLogitsProcessor(as_list), ids, logits))
    prebuilt = N.SequenceBiasTable.from_sequence_bias(table)
    assert_same(N.sequence_bias(logits, ids.int(), prebuilt), expected, what="table")


def test_sequence_bias_group_order_is_hf_order() -> None:
    logits = torch.zeros(1, 6)
    ids = torch.tensor([[1, 2, 3]])
    # Groups by prefix length in order of first appearance: 3 (the unmatched first key), 2, 1.
    # So -1e8 + 1e8 + 1 = 1; dict order or sorted lengths would give (1e8 + 1) - 1e8 = 0.
    table = {(5, 5, 5, 1): 7.0, (2, 3, 0): 1e8, (3, 0): 1.0, (1, 2, 3, 0): -1e8, (1,): 0.5}
    out = N.sequence_bias(logits, ids, table)
    assert_same(out, hf(SequenceBiasLogitsProcessor(table), ids, logits))
    assert out[0, 0].item() == 1.0 and out[0, 1].item() == 0.5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sequence_bias_low_precision_strided(dtype: torch.dtype) -> None:
    logits = make_logits(7, 60, seed=15).to(dtype)[:, ::2]
    ids = make_ids(7, 10, 30, seed=16)
    table = planted_bias(ids, 30, seed=17)
    assert_same(N.sequence_bias(logits, ids, table), hf(SequenceBiasLogitsProcessor(table), ids, logits.contiguous()))


def test_sequence_bias_infinite_biases_and_bad_rows() -> None:
    logits = make_logits(5, 6, seed=18)
    logits[0, 2] = math.inf
    ids = torch.tensor([[1, 2]] * 5)
    table = {(3,): -math.inf, (2,): -math.inf, (2, 4): math.inf, (2, 5): -math.inf, (1, 2, 5): 1.0}
    out = N.sequence_bias(logits, ids, table)
    assert_same(out, hf(SequenceBiasLogitsProcessor(table), ids, logits))
    assert math.isnan(out[0, 2].item())  # inf + -inf, as documented
    assert math.isnan(out[1, 4].item())  # -inf + inf
    assert bool(torch.isneginf(out[1, [0, 1, 2, 3, 5]]).all())


def test_sequence_bias_list_form_quirks_like_hf() -> None:
    logits = make_logits(2, 8, seed=19)
    ids = torch.tensor([[1, 2], [2, 3]])
    # an empty id list biases nothing; a repeated sequence keeps its last bias
    as_list = [[[], 3.0], [[3], 1.0], [[2, 4], -1.0], [[3], 2.0], [[5, 6], 1.5, "extra"]]
    assert_same(N.sequence_bias(logits, ids, as_list), hf(SequenceBiasLogitsProcessor(as_list), ids, logits))
    table = {(np.int64(3),): 1.0, (2, np.int32(4)): np.float64(-1.0)}
    assert_same(N.sequence_bias(logits, ids, table), hf(SequenceBiasLogitsProcessor(table), ids, logits))


HF_REJECTS = [
    {},
    [],
    "abc",
    5,
    {(1,): 1},
    {(1, "a"): 1.0},
    {(-1,): 1.0},
    {(): 1.0},
    {1: 1.0},
    [[[1], 1]],
    [[(1, 2), 1.0]],
    [[[1, -2], 1.0]],
    [[[1.5], 1.0]],
]


@pytest.mark.parametrize("bad", HF_REJECTS, ids=[repr(b) for b in HF_REJECTS])
def test_sequence_bias_validation_like_hf(bad: object) -> None:
    logits, ids = make_logits(2, 8, seed=20), torch.tensor([[1, 2], [2, 3]])
    with pytest.raises(ValueError):
        hf(SequenceBiasLogitsProcessor(bad), ids, logits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence_bias"):
        N.sequence_bias(logits, ids, bad)  # type: ignore[arg-type]


def test_sequence_bias_errors() -> None:
    logits, ids = make_logits(2, 8, seed=21), torch.tensor([[1, 2], [2, 3]])
    for bad in ([[]], [[[1]]], [5], [[[1], None]]):  # transformers fails with IndexError/TypeError here
        with pytest.raises(ValueError, match="sequence_bias"):
            N.sequence_bias(logits, ids, bad)  # type: ignore[arg-type]
    for oov in ({(8,): 1.0}, {(1, 9): 1.0}, {(12, 1): 1.0}):
        with pytest.raises(ValueError):
            hf(SequenceBiasLogitsProcessor(oov), ids, logits)
        with pytest.raises(ValueError, match=r"sequence_bias.*vocabulary size 8"):
            N.sequence_bias(logits, ids, oov)
    table = N.SequenceBiasTable.from_sequence_bias({(1,): 1.0, (2, 3): 2.0})
    for elsewhere in (table.to("meta"), N.SequenceBiasTable.from_sequence_bias({(1,): 1.0}, device="meta")):
        assert elsewhere.device == torch.device("meta")
        with pytest.raises(ValueError, match="sequence_bias"):
            N.sequence_bias(logits, ids, elsewhere)
    with pytest.raises(ValueError, match="input_ids"):
        N.sequence_bias(logits, ids[:1], {(1,): 1.0})
    with pytest.raises(TypeError, match="input_ids"):
        N.sequence_bias(logits, ids.float(), {(1,): 1.0})
    with pytest.raises(TypeError, match="logits"):
        N.sequence_bias(logits.long(), ids, {(1,): 1.0})


# --------------------------------------------------------------------------- bad words
def test_bad_words_matches_hf() -> None:
    for batch, seq, vocab in [(1, 5, 4), (7, 15, 9), (3, 20, 5000), (2, 0, 6), (5, 6, 1)]:
        logits = make_logits(batch, vocab, seed=seq)
        ids = make_ids(batch, seq, vocab, seed=vocab, left_pad=True)
        rng = np.random.default_rng(seq)
        words = [[int(t) for t in rng.integers(0, vocab, int(rng.integers(1, 4)))] for _ in range(6)]
        if seq >= 2:
            words += [ids[b, -k:].tolist() + [vocab - 1] for b in range(batch) for k in (1, 2)]
        words += [[vocab - 1], [0, vocab - 1]]
        for eos in (None, vocab - 1, [vocab - 1, 0], torch.tensor([vocab - 1])):
            if eos is not None and vocab == 1:
                continue  # every word would be dropped
            expected = hf(NoBadWordsLogitsProcessor(words, eos), ids, logits)
            out = N.bad_words_mask(logits, ids, words, eos)
            check_new_float32(out, logits)
            assert_same(out, expected, what=f"{(batch, seq, vocab)} eos={eos}")
            table = N.SequenceBiasTable.from_bad_words(words, eos)
            assert_same(N.bad_words_mask(logits, ids, table), expected, what="table")


def test_bad_words_eos_filter_and_low_precision() -> None:
    logits = make_logits(3, 10, seed=22, bad_rows=False).bfloat16()[:, :]
    ids = torch.tensor([[1, 2], [2, 3], [3, 4]])
    words = [[5], [2, 3], [4, 5], [3, 5]]
    out = N.bad_words_mask(logits, ids, words, eos_token_id=5)
    assert_same(out, hf(NoBadWordsLogitsProcessor(words, 5), ids, logits))
    # [5] alone is EOS: not banned; [3, 5] and [4, 5] still are
    assert [torch.isneginf(row).nonzero().flatten().tolist() for row in out] == [[3], [5], [5]]
    half = make_logits(3, 20, seed=23).half()[:, ::2]
    assert_same(N.bad_words_mask(half, ids, words), hf(NoBadWordsLogitsProcessor(words), ids, half.contiguous()))


def test_bad_words_bad_rows_documented() -> None:
    logits = make_logits(5, 6, seed=24)
    out = N.bad_words_mask(logits, torch.zeros(5, 1, dtype=torch.long), [[0], [3]])
    assert_same(out, hf(NoBadWordsLogitsProcessor([[0], [3]]), torch.zeros(5, 1, dtype=torch.long), logits))
    assert math.isnan(out[2, 0].item()) and math.isnan(out[2, 3].item())  # NaN + -inf stays NaN
    assert bool(torch.isneginf(out[1]).all())


BAD_WORDS_REJECTS = [[], "x", [1, 2], [[-1]], [[1.0]], [[1], (2, 3)], ((1,),)]


@pytest.mark.parametrize("bad", BAD_WORDS_REJECTS, ids=[repr(b) for b in BAD_WORDS_REJECTS])
def test_bad_words_validation_like_hf(bad: object) -> None:
    logits, ids = make_logits(2, 8, seed=25), torch.tensor([[1, 2], [2, 3]])
    with pytest.raises(ValueError):
        hf(NoBadWordsLogitsProcessor(bad), ids, logits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad_words_ids"):
        N.bad_words_mask(logits, ids, bad)  # type: ignore[arg-type]


def test_bad_words_quirks_like_hf() -> None:
    logits, ids = make_logits(2, 8, seed=31), torch.tensor([[1, 2], [2, 3]])
    # an empty word bans nothing; EOS filtering may leave nothing to ban
    for words, eos in (([[], [3]], None), ([[1]], 1), ([[1], [7]], [7, 1]), ([[2, 3], [2, 3], [4]], None)):
        out = N.bad_words_mask(logits, ids, words, eos)
        assert_same(out, hf(NoBadWordsLogitsProcessor(words, eos), ids, logits), what=f"{words} eos={eos}")


def test_bad_words_errors() -> None:
    logits, ids = make_logits(2, 8, seed=26), torch.tensor([[1, 2], [2, 3]])
    with pytest.raises(ValueError):
        hf(NoBadWordsLogitsProcessor([[1], [2, 8]]), ids, logits)
    with pytest.raises(ValueError, match=r"bad_words_ids.*\[8\]"):
        N.bad_words_mask(logits, ids, [[1], [2, 8]])
    with pytest.raises(ValueError, match="eos_token_id"):
        N.bad_words_mask(logits, ids, [[1]], eos_token_id="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_ids"):
        N.bad_words_mask(logits, ids[:1], [[1]])


# --------------------------------------------------------------------------- torch.compile
def _compiled_equal(fn, *args) -> None:  # type: ignore[no-untyped-def]
    torch._dynamo.reset()
    assert_same(torch.compile(fn, fullgraph=False)(*args), fn(*args), what="compiled vs eager")


@pytest.mark.slow
def test_compile_and_opcheck() -> None:
    logits = make_logits(6, 20, seed=27)
    ids = make_ids(6, 15, 20, seed=28)
    enc = make_ids(2, 10, 20, seed=29)
    bias = N.SequenceBiasTable.from_sequence_bias(planted_bias(ids, 20, seed=30))
    words = N.SequenceBiasTable.from_bad_words([[1], [ids[0, -1].item(), 3]], eos_token_id=1)
    _compiled_equal(lambda x, i: N.no_repeat_ngram_mask(x, i, 2), logits, ids)
    _compiled_equal(lambda x, i, e: N.encoder_no_repeat_ngram_mask(x, i, e, 2), logits, ids, enc)
    _compiled_equal(lambda x, i: N.sequence_bias(x, i, bias), logits, ids)
    _compiled_equal(lambda x, i: N.bad_words_mask(x, i, words), logits, ids)
    # opcheck compares outputs with assert_close, where NaN != NaN: no bad rows here.
    logits = make_logits(6, 20, seed=27, bad_rows=False)
    opcheck = torch.library.opcheck
    opcheck(torch.ops.pydecode.no_repeat_ngram_mask.default, (logits, ids, 2))
    opcheck(torch.ops.pydecode.encoder_no_repeat_ngram_mask.default, (logits, ids, enc, 2))
    table_args = (bias.single_ids, bias.single_biases, bias.prefixes, bias.last_tokens, bias.biases)
    opcheck(torch.ops.pydecode.sequence_bias.default, (logits, ids, *table_args))
