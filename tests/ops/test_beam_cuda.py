"""The cuda backend of pydecode.ops.beam_topk (csrc/cuda/beam.cu) against the torch reference on
the same GPU and the cpu backend.

Without log-softmax the candidate scores are logits + beam scores on both sides: exact. With it,
the kernel's log-sum-exp is an exact integer sum rounded once, torch's CUDA kernel a float32 sum,
so scores may differ by a few ulps (atol 1e-5 here) and the selection is compared where no two
candidates are that close. Small batches split rows into slices (PYDECODE_CUDA_BEAM_SPLITS forces
the count): the same outputs as one block per row, bit for bit. Tests named "big" run full shapes
and can be deselected for compute-sanitizer.
"""

from __future__ import annotations

import pytest
import torch

from pydecode import _ext
from pydecode.ops import beam as B
from tests.helpers import assert_same
from tests.ops import beam_cases

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or _ext.cuda_module() is None, reason="needs the CUDA module and a GPU"
    ),
]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def run(logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, lsm: bool = True):  # noqa: ANN201
    got = B.beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=lsm, backend="cuda")
    want = B.beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=lsm, backend="torch")
    return got, want


def check(got: B.BeamTopK, want: B.BeamTopK, exact: bool, what: str) -> None:
    assert_same(got.scores, want.scores, atol=0 if exact else 1e-5, what=f"{what} scores")
    assert_same(got.token_ids, want.token_ids, what=f"{what} tokens")
    assert_same(got.beam_indices, want.beam_indices, what=f"{what} beams")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_beam_topk_matches_reference(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    for batch, beams, vocab in ((1, 1, 5), (3, 4, 111), (2, 8, 3001)):
        logits = (torch.randn(batch * beams, vocab, generator=g) * 3).to(dtype).cuda()
        scores = (torch.randn(batch * beams, generator=g) - 5).cuda()
        for k in sorted({1, 2 * beams, min(3 * beams, beams * vocab), beams * vocab if vocab < 10 else 7}):
            for lsm in (True, False):
                got, want = run(logits, scores, beams, k, lsm)
                check(got, want, not lsm, f"B={batch} W={beams} V={vocab} k={k} lsm={lsm}")


def test_cuda_beam_topk_ties_and_bad_rows() -> None:
    """Integer logits (many ties: lowest flat index wins), NaN rows, all -inf rows, dead beams."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randint(0, 3, (8, 50), generator=g).float()
    logits[2, 7] = float("nan")
    logits[5] = float("-inf")
    scores = torch.zeros(8)
    scores[3] = float("-inf")
    logits, scores = logits.cuda(), scores.cuda()
    for lsm in (True, False):
        for k in (1, 4, 8, 30):
            got, want = run(logits, scores, 4, k, lsm)
            check(got, want, not lsm, f"ties lsm={lsm} k={k}")


def test_cuda_beam_topk_key_bin_tie() -> None:
    """The row's candidates listed by the logits' key bins, whose k-th score rounding ties with an
    unlisted logit's: with beam scores of -3e4 (no log-softmax: x + b, the reference's own add)
    logits 8.0 and 7.9995 score alike and the 7.9995s, in the lower key bin, have the lower indices,
    so they are the reference's; the kernel must select on the row (also under tests/cuda_emulation
    and test_cuda_model_reads.py on CPU)."""
    x = beam_cases.tie_at_bin_edge(8, 9000)
    for k in (8, 20):
        got, want = run(x.cuda(), torch.full((8,), -3e4, device="cuda"), 4, k, lsm=False)
        check(got, want, True, f"key-bin tie k={k}")


def test_cuda_beam_topk_strided_and_large_k() -> None:
    g = torch.Generator().manual_seed(2)
    wide = (torch.randn(6, 205, generator=g) * 2).cuda()
    logits = wide[:, :200]  # row stride 205: rows are not 16-byte aligned
    scores = torch.randn(6, generator=g).cuda()
    got, want = run(logits, scores, 3, 6, False)
    check(got, want, True, "strided")
    # k > vocab: every row is a candidate (num_beams * vocab candidates per item)
    got, want = run(logits[:, :5], scores, 3, 15, False)
    check(got, want, True, "k = num_beams * vocab")
    # beyond the shared-memory merge (3 * 1500 candidates > BEAM_MERGE_LIMIT): the torch fallback
    big = (torch.randn(6, 2000, generator=g) * 2).cuda()
    assert 3 * 1500 > _ext.cuda_module().BEAM_MERGE_LIMIT
    got, want = run(big, scores, 3, 1500, False)
    check(got, want, True, "fallback")


def test_cuda_beam_topk_matches_cpu_backend() -> None:
    if _ext.cpu_module() is None:
        pytest.skip("cpu module not built")
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 4000, generator=g) * 3
    scores = torch.randn(12, generator=g)
    cpu = B.beam_topk(logits, scores, 4, 8, backend="cpu")
    cuda = B.beam_topk(logits.cuda(), scores.cuda(), 4, 8, backend="cuda")
    assert_same(cuda.scores, cpu.scores, atol=1e-5, what="scores")
    assert_same(cuda.token_ids, cpu.token_ids, what="tokens")
    assert_same(cuda.beam_indices, cpu.beam_indices, what="beams")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,beams,vocab", [(1, 4, 128256), (7, 4, 32000), (16, 4, 152064), (8, 8, 128256)])
def test_cuda_big_beam_topk(dtype: torch.dtype, batch: int, beams: int, vocab: int) -> None:
    g = torch.Generator().manual_seed(batch)
    logits = (torch.randn(batch * beams, vocab, generator=g) * 3).to(dtype).cuda()
    scores = (torch.randn(batch * beams, generator=g) - 3).cuda()
    got, want = run(logits, scores, beams, 2 * beams)
    check(got, want, False, f"{batch}x{beams}x{vocab}")


def test_cuda_beam_split_rows_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced slices per row (and the automatic count) give what one block per row gives, bit for bit."""
    for name, (x, bonus) in beam_cases.split_rows(20000, seed=11).items():
        x, bonus = x.cuda(), bonus.cuda()
        for lsm in (True, False):
            for k in (1, 8, 20):
                monkeypatch.setenv(B.BEAM_SPLITS_ENV, "1")
                one = B.beam_topk(x, bonus, 4, k, apply_log_softmax=lsm, backend="cuda")
                want = B.beam_topk(x, bonus, 4, k, apply_log_softmax=lsm, backend="torch")
                # (bad rows against the reference: test_cuda_beam_topk_ties_and_bad_rows; the bin-edge
                # tie is the reference's own only without log-softmax)
                if name != "bad rows" and (name != "bin-edge tie" or not lsm):
                    check(one, want, not lsm, f"{name} lsm={lsm} k={k}")
                for splits in ("2", "5", "32"):
                    monkeypatch.setenv(B.BEAM_SPLITS_ENV, splits)
                    got = B.beam_topk(x, bonus, 4, k, apply_log_softmax=lsm, backend="cuda")
                    for a, b, what in zip(got, one, ("scores", "tokens", "beams")):
                        assert_same(a, b, atol=0, rtol=0, what=f"{name} lsm={lsm} k={k} splits={splits} {what}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 8, 16])
def test_cuda_big_beam_split_rows(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, batch: int) -> None:
    """Full vocabularies at the batches that split automatically (4 beams: 4-64 rows), against one
    block per row and the reference."""
    g = torch.Generator().manual_seed(20 + batch)
    logits = (torch.randn(batch * 4, 128256, generator=g) * 3).to(dtype).cuda()
    scores = (torch.randn(batch * 4, generator=g) - 3).cuda()
    monkeypatch.delenv(B.BEAM_SPLITS_ENV, raising=False)
    from pydecode import _ext

    assert _ext.cuda_module().beam_splits(batch * 4, 128256, 4, 8) > 1
    got, want = run(logits, scores, 4, 8)
    check(got, want, False, f"split {batch}x4")
    monkeypatch.setenv(B.BEAM_SPLITS_ENV, "1")
    one = B.beam_topk(logits, scores, 4, 8, backend="cuda")
    for a, b, what in zip(got, one, ("scores", "tokens", "beams")):
        assert_same(a, b, atol=0, rtol=0, what=f"split vs one block {batch}x4 {what}")


@pytest.mark.parametrize(("batch", "vocab"), [(2, 20000), pytest.param(64, 128256, id="big")])  # big: not sanitized
def test_cuda_beam_one_read_list_matches(monkeypatch: pytest.MonkeyPatch, batch: int, vocab: int) -> None:
    """bfloat16 rows with min(k, vocab) <= 64 list their candidates as they are read (the one-read
    list, PYDECODE_CUDA_TOPK_SCAN): bit for bit what the statistics pass's list gives, one block per
    row (and through the split merge's fallback rows), with and without log-softmax, on plain rows,
    rows it cannot serve (NaN, +inf, -inf, integer ties) and a list whose smallest score rounds to
    the k-th (beam scores -3e9)."""
    g = torch.Generator().manual_seed(vocab)
    x = torch.randn(batch * 4, vocab, generator=g) * 3
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    x[3, ::3] = float("-inf")
    x[4 % x.shape[0]] = torch.randint(0, 3, (vocab,), generator=g).float()
    x[5 % x.shape[0], 1000:1080] = 8 + torch.arange(80) / 16
    x = x.to(torch.bfloat16).cuda()
    cases = [(torch.randn(batch * 4, generator=g) - 3).cuda(), torch.full((batch * 4,), -3e9).cuda()]
    for bonus in cases:
        for lsm in (True, False):
            for k in (1, 8, 64):
                for splits in ("1", "3"):
                    monkeypatch.setenv(B.BEAM_SPLITS_ENV, splits)
                    monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "0")
                    want = B.beam_topk(x, bonus, 4, k, apply_log_softmax=lsm, backend="cuda")
                    monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "1")
                    got = B.beam_topk(x, bonus, 4, k, apply_log_softmax=lsm, backend="cuda")
                    for a, b, what in zip(got, want, ("scores", "tokens", "beams")):
                        assert_same(a, b, atol=0, rtol=0, what=f"one-read list lsm={lsm} k={k} splits={splits} {what}")
