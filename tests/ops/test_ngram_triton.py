"""The triton backend of the n-gram ops (triton_kernels/ngram.py) against the torch references, bit
for bit: no-repeat n-grams, encoder no-repeat n-grams, sequence bias and bad words; under the
interpreter on CPU at small shapes, compiled on a GPU (``gpu`` marker) at small and full shapes."""

from __future__ import annotations

import math

import pytest
import torch

from pydecode.ops import ngram as N
from tests.ops.triton_inputs import DEVICES, DTYPES, GPU_SHAPES, assert_exact, check, make_logits, strided


def check_bias(fn, logits: torch.Tensor, ids: torch.Tensor, table, *args, what: str = "") -> None:
    """The triton op against the reference run on CPU: on CUDA the reference's ``index_add_`` adds
    through atomics in no fixed order, while the order of float32 additions is part of the
    contract (transformers adds group after group); the CPU reference adds in table order."""
    got = fn(logits, ids, table, *args, backend="triton")
    if isinstance(table, N.SequenceBiasTable):
        table = table.to("cpu")
    expected = fn(logits.cpu(), ids.cpu(), table, *args, backend="torch")
    assert_exact(got.cpu(), expected, what=what)


def pooled_ids(batch: int, seq: int, vocab: int, seed: int, pool: int = 4, device: str = "cpu") -> torch.Tensor:
    """Ids from a tiny pool (n-grams repeat) at a per-row offset; the pool reaches 0 and vocab - 1
    (and past it) in some rows."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, vocab + 2, (batch, 1), generator=g)
    base[0] = 0
    if batch > 1:
        base[1] = max(vocab - pool + 1, 0)
    return (torch.randint(0, pool, (batch, seq), generator=g) + base).to(device)


def _table(batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Input ids and a sequence-bias dict: singles at both vocabulary edges, -0.0 / 0.0 / +-inf biases,
    several sequences ending in the same token (the reference's addition order matters), a prefix
    longer than the history, and rows whose tails match various prefixes."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(vocab, 5), (batch, 12), generator=g)
    top = vocab - 1
    bias = {
        (0,): 1.5, (top,): -2.25, (1,): -0.0, (2,): 0.0,
        (3, 1): 0.1, (4, 1): 0.7, (0, 3, 1): -1.3, (1, 2, 3, 4, 1): 2.9, (2, 1): math.inf,
        (2, 2): -math.inf, (4,): 0.125, (3, 4, top): 7.0,
        (0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4): 3.0,
    }
    bias = {k: v for k, v in bias.items() if max(k) < vocab}
    for b in range(0, batch, 2):
        prefix = [(3,), (0, 3), (1, 2, 3, 4), (2,), (3, 4), (4,)][b % 6]
        ids[b, 12 - len(prefix):] = torch.tensor(prefix)
    return ids, bias


def _ngram_ops(logits: torch.Tensor, ids: torch.Tensor, what: str) -> None:
    batch = logits.shape[0]
    for n in (1, 2, 3, 5):
        check(N.no_repeat_ngram_mask, logits, ids, n, what=f"no-repeat n={n} {what}")
    enc = pooled_ids(max(batch // 2, 1) if batch % 2 == 0 else batch, 30, logits.shape[1], seed=batch,
                     device=ids.device)
    for n in (1, 2, 4):
        check(N.encoder_no_repeat_ngram_mask, logits, ids.int(), enc, n, what=f"encoder n={n} {what}")


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 111), (34, 300)])
def test_ngram_ops_match_reference(dev: str, dtype: torch.dtype, shape: tuple[int, int]) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch * vocab, dtype=dtype, device=dev)
    _ngram_ops(logits, pooled_ids(batch, 40, vocab, seed=vocab, device=dev), f"{shape} {dtype}")
    ids, bias = _table(batch, vocab, seed=vocab)
    ids = ids.to(dev)
    table = N.SequenceBiasTable.from_sequence_bias(bias, device=dev)
    for input_ids in (ids, ids.int(), ids[:, :2], ids[:, :0], ids - 7):  # negatives are only compared
        check_bias(N.sequence_bias, logits, input_ids, table, what=f"bias {shape} {tuple(input_ids.shape)}")
    words = [list(key) for key in bias]
    check_bias(N.bad_words_mask, logits, ids, words, 0, what=f"bad words {shape}")


@pytest.mark.parametrize("dev", DEVICES)
def test_ngram_edges_strides_and_long_histories(dev: str) -> None:
    logits = make_logits(5, 997, seed=3, device=dev)
    ids = pooled_ids(5, 700, 997, seed=4, pool=3, device=dev)  # 700 windows: several lane blocks
    for mode in ("wide", "every_other", "column_major"):
        x = strided(logits.half(), mode)
        check(N.no_repeat_ngram_mask, x, ids.t().contiguous().t(), 3, what=f"no-repeat {mode}")
        check_bias(N.sequence_bias, x, ids, {(int(ids[0, -1]), 5): -1.0, (7,): 2.0}, what=f"bias {mode}")
    check(N.no_repeat_ngram_mask, logits, ids[:, :2], 3, what="history shorter than n")
    check(N.no_repeat_ngram_mask, logits, ids[:, :0], 1, what="empty history, n=1")
    check(N.encoder_no_repeat_ngram_mask, logits, ids[:, :1], ids[:1, :2], 3, what="encoder shorter than n")
    check(N.encoder_no_repeat_ngram_mask, logits, ids[:, :0], ids[:1], 1, what="encoder n=1, no decoder ids")
    check(N.encoder_no_repeat_ngram_mask, logits, ids, ids[0], 2, what="1-D encoder ids")
    # Only singles; only longer sequences; a table emptied by EOS filtering.
    check_bias(N.sequence_bias, logits, ids, {(0,): 1.0, (996,): -0.5}, what="singles")
    check_bias(N.sequence_bias, logits, ids, {(int(ids[1, -1]), 9): -3.0}, what="longer")
    check_bias(N.bad_words_mask, logits, ids, [[2]], 2, what="empty table")


@pytest.mark.parametrize("dev", DEVICES)
def test_ngram_batch_1024(dev: str) -> None:
    logits = make_logits(1024, 33, seed=5, dtype=torch.bfloat16, device=dev)
    ids = pooled_ids(1024, 16, 33, seed=6, device=dev)
    check(N.no_repeat_ngram_mask, logits, ids, 2, what="no-repeat batch 1024")
    check_bias(N.sequence_bias, logits, ids, {(1,): 0.5, (2, 3): -1.0, (0, 2, 3): 0.25}, what="bias batch 1024")


# --------------------------------------------------------------------------- full shapes on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_ngram_full_shapes_gpu(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype, device="cuda")
    ids = pooled_ids(batch, 1024, vocab, seed=vocab, pool=20, device="cuda")
    check(N.no_repeat_ngram_mask, logits, ids, 3, what=f"no-repeat {shape} {dtype}")
    check(N.encoder_no_repeat_ngram_mask, logits, ids, ids[:1, :300], 2, what=f"encoder {shape} {dtype}")
    table_ids, bias = _table(batch, vocab, seed=vocab)
    words = [[int(w) for w in row] for row in torch.randint(0, vocab, (300, 2))]  # 300 two-token bad words
    words += [list(key) for key in bias]
    check_bias(N.sequence_bias, logits, table_ids.cuda(), bias, what=f"bias {shape} {dtype}")
    history = torch.cat([ids, table_ids.cuda()], 1)
    check_bias(N.bad_words_mask, logits, history, words, what=f"bad words {shape} {dtype}")
