"""The triton backend of beam_topk (triton_kernels/beam.py) against the torch reference.

The kernel's log-softmax sums the exponentials exactly (fixed point), torch in float32, so its
scores may differ from the reference's in the last bits; at V = 152064 torch's CPU float32 sum is
itself off by ~3e-6 relative (measured: a log-prob of -2.2368 that is 6e-6 too high), more than the kernel.
So the checks use the float64 log-softmax of the same float32 logits as the oracle: the selected
scores equal its scores of the same candidates (within 4 ulps of their magnitude), are in ranking
order, and every candidate it ranks clearly above the k-th selected score is selected; and where
the reference's choice is unambiguous, the kernel's is the same.
Without log-softmax (scores = logits + beam score, no sum) the result is exactly the reference's.
"""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import _registry
from pydecode.ops import beam as B
from pydecode.triton_kernels import _common
from pydecode.triton_kernels import beam as triton_beam
from tests.helpers import assert_same, edge_rows
from tests.ops.triton_checks import NAN, NEG_INF, Launches

_why = _registry.backend_unavailable_reason("triton", torch.device("cpu"))
interpreted = pytest.mark.skipif(bool(_why), reason=f"triton on CPU tensors: {_why}")
# numpy warns about log(0) / inf - inf inside the interpreter; those values are intended (-inf, NaN).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _exact_scores(logits: torch.Tensor, beam_scores: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits) + beam score in float64 from the float32 values (NaN / inf rows as torch's)."""
    x = logits.detach().to("cpu", torch.float32).to(torch.float64)
    return torch.log_softmax(x, dim=-1) + beam_scores.detach().to("cpu", torch.float32).to(torch.float64)[:, None]


def check(logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, log_softmax: bool = True,
          tol: float = 4 * 2.0**-23) -> None:
    got = B.beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=log_softmax, backend="triton")
    want = B.beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=log_softmax, backend="torch")
    if not log_softmax:
        for g, w, name in zip(got, want, ("scores", "token_ids", "beam_indices")):
            assert_same(g, w, what=name)
        return
    rows, vocab = logits.shape
    batch = rows // num_beams
    scores = _exact_scores(logits, beam_scores.reshape(rows)).reshape(batch, -1)
    flat = (got.beam_indices * vocab + got.token_ids).cpu()
    mine = got.scores.cpu()
    ref_at = scores.gather(1, flat)
    assert_same(mine, ref_at, atol=1e-6, rtol=tol, what="scores of the selected candidates")
    assert bool((flat.sort(1).values.diff(dim=1) > 0).all()), "a candidate was selected twice"
    key = B._score_key(mine)
    assert bool((key[:, :-1] >= key[:, 1:]).all()), "not in ranking order"
    last = mine[:, -1:]
    clear = (scores > last + (last.abs() * tol + 1e-6)) & ~torch.isnan(last)
    clear |= torch.isnan(scores) & ~torch.isnan(last)
    picked = torch.zeros_like(clear).scatter_(1, flat, True)
    missing = clear & ~picked
    assert not bool(missing.any()), f"candidates ranked clearly above the k-th were left out: {missing.nonzero()[:5]}"
    # where the reference's choice is unambiguous, it is the same
    same = (got.token_ids.cpu() == want.token_ids.cpu()) & (got.beam_indices.cpu() == want.beam_indices.cpu())
    assert float(same.float().mean()) > 0.5


@interpreted
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("batch,num_beams,vocab", [(1, 1, 7), (3, 2, 700), (2, 4, 1100)])
def test_matches_reference(batch: int, num_beams: int, vocab: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(batch * vocab)
    logits = (torch.randn(batch * num_beams, vocab, generator=g) * 3).to(dtype)
    beam_scores = -5 * torch.rand(batch * num_beams, generator=g)
    for k in {1, 2 * num_beams, min(num_beams * vocab, 3 * num_beams + 1)}:
        check(logits, beam_scores, num_beams, k)
        check(logits, beam_scores, num_beams, k, log_softmax=False)


@interpreted
def test_large_vocab_scores_are_exact() -> None:
    """V = 152064 (10 blocks per row): the scores are within 4 ulps of the float64 log-softmax. The
    GPU run's failure here was the oracle's (torch's CPU float32 sum), not the kernel's."""
    g = torch.Generator().manual_seed(4 + 152064)
    logits = torch.randn(4, 152064, generator=g) * 3
    check(logits, -5 * torch.rand(4, generator=g), 4, 8)


@interpreted
def test_ties_edge_rows_and_dead_beams() -> None:
    """Planted ties (lowest flat index first), NaN / all -inf / +inf rows, -inf beam scores, k > vocab."""
    x = edge_rows(300, seed=4)[:10]  # 10 rows = 5 items x 2 beams
    bs = torch.tensor([0.0, -1.0, NEG_INF, 0.0, -2.0, NEG_INF, 0.0, 0.0, -0.5, -0.5])
    for k in (1, 4, 301):
        check(x, bs, 2, k, log_softmax=False)
        check(x, bs, 2, k)
    tied = torch.zeros(4, 50)
    tied[:, 10] = 1.0
    check(tied, torch.zeros(4), 2, 6, log_softmax=False)
    got = B.beam_topk(tied, torch.zeros(4), 2, 6, backend="triton")
    assert got.token_ids[0].tolist() == [10, 10, 0, 1, 2, 3] and got.beam_indices[0].tolist() == [0, 1, 0, 0, 0, 0]
    nan_row = torch.full((2, 50), NAN)
    out = B.beam_topk(nan_row, torch.zeros(2), 2, 3, backend="triton")
    assert bool(torch.isnan(out.scores).all()) and out.token_ids[0].tolist() == [0, 1, 2]


@interpreted
def test_strided_logits_and_2d_beam_scores() -> None:
    x = torch.randn(6, 400)
    wide = torch.zeros(6, 800)
    wide[:, ::2] = x
    check(wide[:, ::2], torch.zeros(3, 2), 2, 4, log_softmax=False)
    check(wide[:, ::2], -torch.rand(3, 2), 2, 4)


@interpreted
def test_split_rows_match_one_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows spread over 2, 3 and 7 programs (forced; slices of one block or several) give the
    one-program kernel's candidates bit for bit: scores, tokens and beams, with and without
    log-softmax, on random, tied, NaN and all -inf rows; and the reference's (check)."""
    monkeypatch.setattr(_common, "INTERPRET_BLOCK", 256)
    launches = Launches(triton_beam._beam_split_kernel)
    monkeypatch.setattr(triton_beam, "_beam_split_kernel", launches)
    x = edge_rows(600, seed=9)[[0, 3, 6, 7]].to(torch.bfloat16)  # random, tied, all -inf, NaN: 1 item x 4 beams
    bs = torch.tensor([0.0, -1.0, NEG_INF, -0.25])

    def run(splits: int) -> list[torch.Tensor]:
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
        outs = []
        for k, log_softmax in ((9, True), (200, False)):  # k within the logit tile's 256 classes here
            outs += list(B.beam_topk(x, bs, 4, k, apply_log_softmax=log_softmax, backend="triton"))
        return outs

    want = run(1)
    assert launches.count == 0
    for splits in (2, 3, 7):
        got = run(splits)
        assert launches.count == 2 + 1, "the split path did not run"  # with log-softmax 2 passes, without 1
        launches.count = 0
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, what=f"splits={splits} output {i}")
    check(x.float(), bs, 4, 9)  # still split 7 ways
    check(x.float(), bs, 4, 9, log_softmax=False)


@interpreted
def test_early_tile_gives_the_same_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The early tiles (EARLY): one program per row, the logit tile (the entries whose logit reaches
    the class bound of rank k_row, copied once after the statistics); when it overflows the tile or
    its check fails, the score select's tile (rows whose candidates fit it after 1, 2 or 3 digits
    copy them once and finish the select and the write on it). Split rows: each slice copies its
    logits at or above its own bound and the row's logit tile is gathered from those copies; rows
    whose gathered tile overflows or whose check fails take the score select over the row. Bit for
    bit as when every digit comes from the row (PYDECODE_TRITON_EARLY_TILE=0, which also turns the
    split path off), with and without log-softmax, split or not, and k_row above the tile (never
    early); and the reference's (check)."""
    g = torch.Generator().manual_seed(5)
    vocab = 3000
    far = torch.randn(vocab, generator=g)
    far[:30] = 100.0 + torch.rand(30, generator=g)  # alone in the top key byte: fits after 1 digit
    dense = torch.randn(vocab, generator=g) - 10.0
    dense[:1000] = 1.0 + torch.rand(1000, generator=g) * 2**-8  # > 512 entries share 16 key bits
    tied = torch.randn(vocab, generator=g) - 10.0
    tied[:700] = 1.0  # 700 ties: never fits
    x = torch.stack([far, torch.randn(vocab, generator=g) * 3, dense, tied])  # 5 items x 2 beams with the rows below
    spread_ties = torch.randn(vocab, generator=g) - 10.0
    spread_ties[::300] = 5.0  # 10 ties at the k-th in every slice: the lowest columns win
    x = torch.cat([x, edge_rows(vocab, seed=6)[[3, 6, 7, 8]], spread_ties[None], spread_ties[None] * 0.5])
    bs = torch.tensor([0.0, -1.0, -0.5, NEG_INF, 0.0, -2.0, 0.0, -0.25, 0.0, 0.0])
    shifts: list[int] = []
    copy = triton_beam._copy_top_scores
    logit_tiles: list[int] = []  # per logit-tile copy (BY_LOGIT): how many entries reach the bound

    def counted(row_ptr, lo, hi, m, log_z, bonus, bad, prefix, shift, dst_s, dst_i, log_softmax, block, cap, by_logit,
                stages):  # noqa: ANN001, ANN202
        written, below = copy(row_ptr, lo, hi, m, log_z, bonus, bad, prefix, shift, dst_s, dst_i, log_softmax, block,
                              cap, by_logit, stages)
        if by_logit:  # the logit tile
            logit_tiles.append(int(written.handle.data.item()))
            return written, below + spoil  # +inf: the largest logit left out seems to tie, the score select runs
        shifts.append(int(shift))
        return written, below

    monkeypatch.setattr(triton_beam, "_copy_top_scores", counted)
    # one program per row (the logit tile, then with its check spoilt the score tile); rows split over
    # 3 programs (each slice copies its logits; spoilt, every row takes the score select)
    for splits, spoil in ((None, 0.0), (None, float("inf")), (3, 0.0), (3, float("inf"))):
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
        for k, log_softmax in ((6, True), (6, False), (513, True)):
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "0")
            want = B.beam_topk(x, bs, 2, k, apply_log_softmax=log_softmax, backend="triton")
            assert not shifts and not logit_tiles, "the early tile ran while switched off"
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "1")
            got = B.beam_topk(x, bs, 2, k, apply_log_softmax=log_softmax, backend="triton")
            if splits is None and k <= 512:  # every row tries the logit tile
                # the far, random, dense and spread-ties rows fit it; the tied row's 700 ties and the
                # edge rows' (NaN, inf, -inf and ties over most of the row) overflow it
                assert len(logit_tiles) == x.shape[0] and logit_tiles[3] == 700, logit_tiles
                assert max(logit_tiles[:3] + logit_tiles[8:]) <= 512 < min(logit_tiles[3:8]), logit_tiles
                # the score tile where the logit tile overflowed (those rows never fit it) or its check
                # failed (spoilt: every row; the far, random, dense and a spread-ties row then fit)
                assert (len(shifts) >= 4) == (spoil > 0), shifts
            elif k <= 512:
                assert len(logit_tiles) == splits * x.shape[0], logit_tiles  # every slice copies its share
                # the tied and edge rows overflow the gathered tile and take the score select, which
                # never fits them; spoilt, every row fails the check and the far row fits after 1 digit
                assert (len(shifts) >= 4) == (spoil > 0) and (24 in shifts) == (spoil > 0), shifts
            else:
                assert not shifts and not logit_tiles
            shifts.clear()
            logit_tiles.clear()
            for g_, w, name in zip(got, want, ("scores", "token_ids", "beam_indices")):
                assert_same(g_, w, what=f"early tile vs every digit from the row: {name} k={k} {log_softmax} "
                                        f"{splits} {spoil}")
            check(x, bs, 2, k, log_softmax=log_softmax)
            shifts.clear()
            logit_tiles.clear()
    monkeypatch.setattr(_common, "SPLITS_OVERRIDE", None)
    spoil = float("inf")  # the score select's early tile: the rows' designed digit counts (scores = logits)
    for row, digits in ((0, 1), (1, 2), (2, 3), (3, None)):
        B.beam_topk(x[row:row + 1], torch.zeros(1), 1, 20, apply_log_softmax=False, backend="triton")
        assert shifts == ([] if digits is None else [32 - 8 * digits]), (row, shifts)
        shifts.clear()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16, torch.bfloat16))
@pytest.mark.parametrize("rows,vocab", [(4, 152064), (8, 128256), (64, 32000), (256, 152064)])
def test_gpu_beam_topk_triton(rows: int, vocab: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(rows + vocab)
    logits = (torch.randn(rows, vocab, generator=g) * 3).to(dtype).cuda()
    beam_scores = (-5 * torch.rand(rows, generator=g)).cuda()
    check(logits, beam_scores, 4, 8, tol=8 * 2.0**-23)
    check(logits, beam_scores, 4, 8, log_softmax=False)


@pytest.mark.gpu
@pytest.mark.parametrize("rows,vocab", [(4, 32000), (4, 152064), (8, 128256)])
def test_gpu_beam_split_rows_triton(rows: int, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam top-k measured slower split at every shape (eager, H200): the default rule never splits
    it; forced to 3 and 7 slices, the output is the one-program kernel's, bit for bit."""
    g = torch.Generator().manual_seed(rows * vocab)
    logits = (torch.randn(rows, vocab, generator=g) * 3).to(torch.bfloat16).cuda()
    beam_scores = (-5 * torch.rand(rows, generator=g)).cuda()
    auto = _common.split_count(rows, vocab, logits, min_vocab=_common.BEAM_SPLIT_MIN_VOCAB)
    assert auto == 1
    for log_softmax in (True, False):
        outs = {}
        for splits in (3, 1, 7):
            monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
            outs[splits] = B.beam_topk(logits, beam_scores, 4, 8, apply_log_softmax=log_softmax, backend="triton")
        for splits in (3, 7):
            for g_, w, name in zip(outs[splits], outs[1], ("scores", "token_ids", "beam_indices")):
                assert_same(g_, w, what=f"splits={splits} {name} log_softmax={log_softmax}")


def _merge_inputs(batch: int, num_beams: int, k_row: int, vocab: int, seed: int, device: str = "cpu"):  # noqa: ANN202
    """Candidates as the row kernel writes them: per row k_row distinct tokens and their scores,
    here with ties (within and across beams), -0.0 / +0.0, +-inf and NaNs of both signs and
    other payloads, which the reference's key ranks as one NaN above +inf."""
    g = torch.Generator().manual_seed(seed)
    rows = batch * num_beams
    tokens = torch.stack([torch.randperm(vocab, generator=g)[:k_row] for _ in range(rows)])
    scores = (torch.randn(rows, k_row, generator=g) * 2).round() / 2
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf")])
    pick = torch.rand(rows, k_row, generator=g)
    scores = torch.where(pick < 0.15, specials[torch.randint(0, 4, (rows, k_row), generator=g)], scores)
    bits = scores.view(torch.int32)
    # nan, -nan and other payloads
    nan_bits = torch.tensor([0x7FC00000, -0x00400000, 0x7F800001, -0x007FFFFF], dtype=torch.int32)
    bits = torch.where(pick > 0.93, nan_bits[torch.randint(0, 4, (rows, k_row), generator=g)], bits)
    return bits.view(torch.float32).to(device), tokens.to(device)


@interpreted
@pytest.mark.parametrize("batch,num_beams,k_row,vocab,k", [(3, 4, 8, 1000, 8), (2, 3, 5, 7, 15), (1, 1, 6, 50, 6),
                                                           (4, 2, 9, 30, 1), (2, 5, 12, 200, 20)])
def test_merge_kernel_equals_the_torch_merge(batch: int, num_beams: int, k_row: int, vocab: int, k: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-launch merge (_beam_merge_kernel) returns the torch ops' merge bit for bit: the
    same ranking, ties to the lower flat index, and each score's own bits (-0.0, NaN payloads)."""
    assert num_beams * k_row <= triton_beam.INTERPRET_MERGE_MAX  # the kernel runs, not the torch ops
    scores, tokens = _merge_inputs(batch, num_beams, k_row, vocab, seed=batch * 100 + k)
    got = triton_beam._merge(scores, tokens, batch, num_beams, vocab, k)
    monkeypatch.setattr(triton_beam, "MERGE_MAX", 0)  # the torch ops
    want = triton_beam._merge(scores, tokens, batch, num_beams, vocab, k)
    assert_same(got[0].view(torch.int32), want[0].view(torch.int32), what="score bits")
    assert_same(got[1], want[1], what="token ids")
    assert_same(got[2], want[2], what="beam indices")


@pytest.mark.gpu
@pytest.mark.parametrize("batch,num_beams,k_row,k", [(64, 4, 8, 8), (8, 16, 32, 32), (2, 64, 64, 64)])
def test_gpu_merge_kernel_equals_the_torch_merge(batch: int, num_beams: int, k_row: int, k: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    scores, tokens = _merge_inputs(batch, num_beams, k_row, 152064, seed=k, device="cuda")
    got = triton_beam._merge(scores, tokens, batch, num_beams, 152064, k)
    monkeypatch.setattr(triton_beam, "MERGE_MAX", 0)
    want = triton_beam._merge(scores, tokens, batch, num_beams, 152064, k)
    for g_, w, name in zip(got, want, ("scores", "token_ids", "beam_indices")):
        assert_same(g_.view(torch.int32) if name == "scores" else g_,
                    w.view(torch.int32) if name == "scores" else w, what=name)


@interpreted
def test_beam_call_runs_no_torch_compute_ops() -> None:
    """Every step of a Triton beam top-k call is a Triton kernel: on the H200 the merge's ~20 torch
    ops (each a launch and host time) made 24-26 launches a call. Counted with torch.profiler:
    the aten ops the call itself dispatches, less allocations and views (and the interpreter's
    own copies of the tensors)."""
    from torch.profiler import ProfilerActivity, profile

    x, bs = torch.randn(16, 3000), torch.zeros(16)
    B.beam_topk(x, bs, 4, 8, backend="triton")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        B.beam_topk(x, bs, 4, 8, backend="triton")
    allocation_or_view = {"aten::empty", "aten::new_empty", "aten::reshape", "aten::view", "aten::to",
                          "aten::copy_", "aten::set_", "aten::unsqueeze", "aten::_to_copy", "aten::empty_strided"}
    outer = [e.name for e in prof.events() if e.name.startswith("aten::")
             and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    assert [n for n in outer if n not in allocation_or_view] == []
