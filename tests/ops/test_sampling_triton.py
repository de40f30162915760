"""The triton backend of pydecode.ops.sampling (triton_kernels/sampling.py) against the torch
reference, the cpu backend and itself.

Without a GPU the kernels run on CPU tensors under TRITON_INTERPRET=1 (small shapes: the
interpreter runs each program in numpy). Tests marked ``gpu`` run the compiled kernels at full
shapes. Exact equality everywhere except the top-p / min-p boundary and min_tokens_to_keep ties,
bounded in tests/ops/triton_checks.py.
"""

from __future__ import annotations

import pytest
import torch

from pydecode import _ext
from pydecode.ops import _registry
from pydecode.ops import beam as B
from pydecode.ops import sampling as S
from pydecode.triton_kernels import _common
from pydecode.triton_kernels import sampling as triton_sampling
from tests.helpers import assert_same, edge_rows
from tests.ops.triton_checks import (
    NEG_INF,
    Launches,
    check_min_p,
    check_top_p,
    chosen_logprobs,
    gumbel_tokens,
    seeds,
)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CPU = torch.device("cpu")
_why = _registry.backend_unavailable_reason("triton", CPU)
interpreted = pytest.mark.skipif(bool(_why), reason=f"triton on CPU tensors: {_why}")
# numpy warns about log(0) / inf - inf inside the interpreter; those values are intended (-inf, NaN).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def both(fn, *args, **kwargs):  # noqa: ANN001, ANN201
    return fn(*args, backend="triton", **kwargs), fn(*args, backend="torch", **kwargs)


def chain_reference(x: torch.Tensor, temperature, top_k, top_p, min_p, min_keep):  # noqa: ANN001, ANN201
    """The reference filter chain, stage by stage: (input of top-p, input of min-p, output)."""
    s = S.apply_temperature(x, temperature, backend="torch") if temperature is not None else x.float()
    if top_k is not None:
        s = S.top_k_mask_logits(s, top_k, min_tokens_to_keep=min_keep, backend="torch")
    before_p = s
    if top_p is not None:
        s = S.top_p_mask_logits(s, top_p, min_tokens_to_keep=min_keep, backend="torch")
    before_min_p = s
    if min_p is not None:
        s = S.min_p_mask_logits(s, min_p, min_tokens_to_keep=min_keep, backend="torch")
    return before_p, before_min_p, s


# --------------------------------------------------------------------------- interpreter (CPU)
@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
def test_temperature_greedy_top_k_exact(dtype: torch.dtype) -> None:
    for vocab in (1, 7, 2500):  # one element, V < block, V not a power of two
        x = edge_rows(vocab, seed=vocab).to(dtype)
        n = x.shape[0]
        strided = torch.full((n, 2 * vocab), 7.0, dtype=dtype)
        strided[:, ::2] = x
        for name, view in (("contiguous", x), ("col-strided", strided[:, ::2])):
            for t in (0.7, torch.linspace(0.05, 5.0, n, dtype=torch.float64)):
                got, want = both(S.apply_temperature, view, t)
                assert_same(got, want, what=f"temperature {name} V={vocab}")
            got, want = both(S.greedy, view)
            assert_same(got, want, what=f"greedy {name} V={vocab}")
        ks = [(1, 1), (vocab, 1), (torch.randint(0, vocab + 1, (n,)), 1)]
        if vocab > 7:
            ks += [(vocab - 1, 1), (50, 3), (0, 1)]
        for k, m in ks:
            got, want = both(S.top_k_mask_logits, x, k, min_tokens_to_keep=m)
            assert_same(got, want, what=f"top-k V={vocab} k={k} m={m}")
    got, want = both(S.top_k_mask_logits, x, 5, filter_value=-5.0)
    assert_same(got, want, what="top-k filter_value")


@interpreted
def test_top_k_nan_row_of_the_gpu_run() -> None:
    """The row the GPU run disputed: edge row 7 of the (33, 32000) GPU batch (30% NaN, bf16: many
    ties), k = V - 1. NaN ranks highest (torch.topk on CPU, transformers' TopKLogitsWarper), and the
    finite minimum is unique, so exactly that one entry is removed."""
    vocab = 32000
    x = edge_rows(vocab, seed=33 + vocab)[7:8].to(torch.bfloat16)
    finite = x.float()[0].nan_to_num(nan=float("inf"))
    low = finite.topk(2, largest=False).values
    assert low[0] < low[1], "the minimum is not unique: the test's premise changed"
    got, want = both(S.top_k_mask_logits, x, vocab - 1)
    assert_same(got, want, what="top-k V-1 on the NaN row")
    assert torch.equal((got[0] == NEG_INF).nonzero().flatten(), finite.argmin().reshape(1)), "not exactly the minimum"


def early_tile_rows(vocab: int) -> tuple[torch.Tensor, list[int], list[list[int]]]:
    """Rows for the top-k select's tiles, their k, and the shifts of the copies expected with the
    early tiles on (_copy_prefix: 0 for the class bound's copy, 32 - 8 * d for the radix select's
    after d digits). The class bound fits the tile on the first four (the top entries spread over
    the columns); on ``tied`` (700 ties at the k-th value) its copy overflows and the radix select's
    tile never fits; on ``clustered`` (the top 300 entries in 50 of the 512 column classes) its copy
    overflows and the radix select's tile fits after one digit; on ``spread`` with k = 600 (above
    the 512 classes) the radix select runs from the start and its tile never fits."""
    g = torch.Generator().manual_seed(41)
    far = torch.randn(vocab, generator=g)
    far[:30] = 100.0 + torch.rand(30, generator=g)  # 30 entries alone in the top byte's bin [64, 256)
    spread = torch.randn(vocab, generator=g) * 3  # ~30% above 4: the top byte's bin holds > 512
    dense = torch.randn(vocab, generator=g) - 10.0
    dense[:1000] = 1.0 + torch.rand(1000, generator=g) * 2**-8  # > 512 entries share 16 key bits
    tied = torch.randn(vocab, generator=g) - 10.0
    tied[:700] = 1.0  # 700 ties at the 20th largest: more than the tile at every digit
    clustered = torch.randn(vocab, generator=g)
    columns = torch.arange(vocab)
    clustered[columns % 512 < 50] = 100.0 + torch.rand(int((columns % 512 < 50).sum()), generator=g)
    rows = torch.stack([far, spread, dense, tied, clustered, spread])
    return rows, [20, 20, 20, 20, 300, 600], [[0], [0], [0], [0], [0, 24], []]


@interpreted
def test_top_k_select_fills_its_tile_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """The top-k select's tiles: the class bound's copy (then _tile_kth) and, when it overflows
    or k is above the classes, the radix select's early tile (_radix_select with EARLY). The copies
    are the expected ones, and the outputs are bit for bit those of the select taking every digit
    from the row (PYDECODE_TRITON_EARLY_TILE=0), for the fused chain (tile and written-row paths,
    one program per row and split) and the top-k mask, and the reference's."""
    vocab = 3000
    rows, ks, expected = early_tile_rows(vocab)
    assert int(rows[4].gt(50).sum()) == 300, "the clustered row's premise"
    shifts: list[int] = []
    copy_prefix = triton_sampling._copy_prefix

    def counted(row_ptr, lo, hi, scale, prefix, shift, *args):  # noqa: ANN001, ANN202
        shifts.append(int(shift))
        return copy_prefix(row_ptr, lo, hi, scale, prefix, shift, *args)

    monkeypatch.setattr(triton_sampling, "_copy_prefix", counted)
    for i, (row, k, want_shifts) in enumerate(zip(rows, ks, expected)):
        got = S.top_k_mask_logits(row[None], k, backend="triton")
        assert shifts == want_shifts, (i, k, shifts)
        shifts.clear()
        assert_same(got, S.top_k_mask_logits(row[None], k, backend="torch"), what=f"top-k mask row {i}, k={k}")

    x = torch.cat([rows, edge_rows(vocab, seed=43)])
    n = x.shape[0]
    seed, offset = seeds(n, CPU, base=17)
    for k in (20, 300):
        calls = {
            "tile": lambda k=k: S.filter_and_sample(x, temperature=0.8, top_k=k, top_p=0.9, seed=seed, offset=offset,
                                                return_logprobs=True, backend="triton"),
            "written": lambda k=k: S.filter_and_sample(x, top_k=k, min_p=0.01, seed=seed, offset=offset,
                                                   return_logprobs=True, return_filtered=True, backend="triton"),
            "mask": lambda k=k: (S.top_k_mask_logits(x, k, backend="triton"),),
        }
        for name, call in calls.items():
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "0")
            want = call()
            assert not shifts, f"a tile ran while switched off: {name}, k={k}"
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "1")
            # the split path (rows over 3 programs: every program copies its slice) for the tile call
            for splits in (None, 3) if name == "tile" else (None,):
                monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
                got = call()
                assert len(shifts) >= 3 * (splits or 1), f"the tiles did not run ({splits} splits): {shifts}"
                shifts.clear()
                for g_, w in zip(got, want):
                    if w is not None:
                        assert_same(g_, w, what=f"tiles vs every digit from the row: {name}, k={k}, {splits} splits")
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", None)
        assert_same(calls["mask"]()[0], S.top_k_mask_logits(x, k, backend="torch"), what=f"top-k {k} mask vs reference")
        shifts.clear()
    monkeypatch.setenv(_common.EARLY_TILE_ENV, "yes")
    with pytest.raises(ValueError, match="PYDECODE_TRITON_EARLY_TILE must be 0 or 1"):
        S.top_k_mask_logits(x, 20, backend="triton")


@interpreted
def test_append_selected_keeps_column_order() -> None:
    """_common.append_selected stores a block's selected entries after those already written, in
    column order, bit for bit (NaN, -0.0, -inf): one by one for at most FEW of them (append_few),
    by a scan for more (append_scan); past CAP nothing is written but the count goes on."""
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(x_ptr, sel_ptr, out_x_ptr, out_i_ptr, n_ptr, BLOCK: tl.constexpr, CAP: tl.constexpr):
        written = tl.full((), 0, tl.int32)
        for start in range(0, 2 * BLOCK, BLOCK):  # two blocks
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + cols)
            sel = tl.load(sel_ptr + cols) != 0
            written = _common.append_selected(x, cols, sel, written, out_x_ptr, out_i_ptr, CAP)
        tl.store(n_ptr, written)

    block, cap = 64, 16
    x = torch.randn(2 * block)
    x[[3, 70, 71]] = torch.tensor([float("nan"), -0.0, float("-inf")])
    for picks in ([3, 9, 40], [1, 2, 3, 5, 8, 13, 21, 34, 60], [70, 71], [5, 100], list(range(0, 128, 7))):
        sel = torch.zeros(2 * block, dtype=torch.int32)
        sel[picks] = 1
        out_x = torch.full((cap,), 7.0)
        out_i = torch.full((cap,), -1, dtype=torch.int32)
        n = torch.zeros(1, dtype=torch.int32)
        kernel[(1,)](x, sel, out_x, out_i, n, BLOCK=block, CAP=cap)
        assert int(n) == len(picks), (picks, n)
        kept = picks[:cap]
        assert out_i[:len(kept)].tolist() == kept, (picks, out_i)
        assert torch.equal(out_x[:len(kept)].view(torch.int32), x[kept].view(torch.int32)), picks
        assert (out_i[len(kept):] == -1).all(), "a write past the selected entries or past CAP"


@interpreted
def test_top_p_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Top-p without an active top-k in the decode-loop call: rows whose nucleus lies within the
    entries at or above a class bound (rank 1080 of 2048 here) finish on that 2048-entry tile, which the sum
    pass copies as it counts the entries at the bound and sums the mass below it. Rows with a wider
    nucleus (flat rows, a tie group, a wide randn row) take the row path; rows with a top-k in the
    same call the top-k tile. Either way the tokens are those of the row path (written rows) and of
    PYDECODE_TRITON_EARLY_TILE=0, and the log-probs agree to rounding; with min-p and
    min_tokens_to_keep too."""
    vocab = 8192
    g = torch.Generator().manual_seed(51)
    # nuclei of 325-492 entries at p = 0.9: the mass below a rank-1024 bound is 0.02-0.03 of Z;
    # rows 1 and 2 are among those the 512-entry tile of rank 432 missed (0.10 and 0.104 of Z below it)
    peaked = torch.randn(4, vocab, generator=g) * 3
    flat = torch.randn(2, vocab, generator=g) * 0.1  # nucleus of ~7200
    wide = torch.randn(1, vocab, generator=g)  # nucleus of ~5000 at p = 0.9, ~860 at p = 0.5 and T = 0.8
    x = torch.cat([peaked, flat, torch.zeros(1, vocab), wide, edge_rows(vocab, seed=52)])
    n = x.shape[0]
    seed, offset = seeds(n, CPU, base=23)
    assert triton_sampling._p_tile_rank(vocab, 2048) == 1080
    some_top_k = torch.zeros(n, dtype=torch.int64)
    some_top_k[[1, 5]] = 50  # these rows take the top-k tile, the others the top-p tile as before
    copies: dict[int, int] = {}  # row -> entries on the tile, for the rows that finished there
    top_p_tile = triton_sampling._top_p_tile

    def row_of(row_ptr) -> int:  # noqa: ANN001
        return (int(row_ptr.handle.data.item()) - x.data_ptr()) // (vocab * x.element_size())

    def recorded_tile(row_ptr, *args):  # noqa: ANN001, ANN202
        out = top_p_tile(row_ptr, *args)
        if bool(out[2].handle.data.item()):
            copies[row_of(row_ptr)] = int(out[3].handle.data.item())
        return out

    monkeypatch.setattr(triton_sampling, "_top_p_tile", recorded_tile)
    for kw in (dict(top_p=0.9), dict(temperature=0.8, top_p=0.5, min_p=0.02, min_tokens_to_keep=3)):
        served = {0, 1, 2, 3} | ({7} if kw["top_p"] == 0.5 else set())  # at p = 0.5 the wide row's fits
        for top_k, on_tile in ((None, served), (some_top_k, served - {1})):
            what = f"{kw}, top_k {'None' if top_k is None else 'on rows 1 and 5'}"
            rows = S.filter_and_sample(x, **kw, top_k=top_k, seed=seed, offset=offset, return_logprobs=True,
                                       return_filtered=True, backend="triton")
            assert not copies, "the written-rows call tried the top-p tile"
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "0")
            off = S.filter_and_sample(x, **kw, top_k=top_k, seed=seed, offset=offset, return_logprobs=True,
                                      backend="triton")
            assert not copies, "the top-p tile ran while switched off"
            monkeypatch.setenv(_common.EARLY_TILE_ENV, "1")
            got = S.filter_and_sample(x, **kw, top_k=top_k, seed=seed, offset=offset, return_logprobs=True,
                                      backend="triton")
            for row in on_tile:
                assert 1024 <= copies.get(row, 0) <= 2048, f"row {row} did not finish on the tile ({what}): {copies}"
            # not the flat rows, the tie group, the top-k rows (the edge rows, 8 on, may or may not)
            assert set(copies) & set(range(8)) == on_tile, (what, copies)
            copies.clear()
            assert_same(got.tokens, rows.tokens, what=f"top-p tile vs row path tokens {what}")
            assert_same(got.tokens, off.tokens, what=f"top-p tile vs switched off {what}")
            assert_same(got.logprobs, rows.logprobs, atol=2e-5, rtol=1e-5, what=f"top-p tile logprobs {what}")
            assert_same(got.logprobs, chosen_logprobs(rows.filtered, rows.tokens), atol=2e-5, rtol=1e-5,
                        what=f"top-p tile logprobs vs the filtered row {what}")


@interpreted
def test_top_p_search_stops_on_a_repeated_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The row path's top-p search measures the count below hi (pivot 0 after the first pass), so a
    row whose maximum repeats stops within a few passes (it took 76 on a row of zeros, shrinking
    towards the maximum one pass at a time): the tie group at the maximum is kept whole."""
    vocab = 4096
    g = torch.Generator().manual_seed(3)
    repeated = torch.randn(vocab, generator=g) * 0.1 - 10.0
    repeated[: vocab // 2] = 1.0  # half the row ties at its maximum
    x = torch.stack([torch.zeros(vocab), torch.full((vocab,), 2.5), torch.full((vocab,), -3.0), repeated])
    passes: dict[int, int] = {}
    pivot_masses = triton_sampling._pivot_masses

    def counted(row_ptr, *args):  # noqa: ANN001, ANN202
        row = (int(row_ptr.handle.data.item()) - x.data_ptr()) // (vocab * 4)
        passes[row] = passes.get(row, 0) + 1
        return pivot_masses(row_ptr, *args)

    monkeypatch.setattr(triton_sampling, "_pivot_masses", counted)
    out = S.filter_and_sample(x, top_p=0.9, seed=0, return_filtered=True, backend="triton")
    assert passes and max(passes.values()) <= 3, passes
    kept = out.filtered > NEG_INF
    assert kept[:3].all(), "a flat row's single tie group is kept whole"
    assert torch.equal(kept[3], repeated == 1.0), "only the tie group at the maximum survives top-p 0.9"


def test_top_p_tile_rank() -> None:
    """The top-p tile's class-bound rank aims at ~1400 entries on rows whose top entries are spread
    at random: about half of 2048 classes whatever the vocabulary, most of a split row's ~512-1024
    folded classes; every class for rows hardly larger than that."""
    rank = triton_sampling._p_tile_rank
    assert [rank(v, 2048) for v in (32000, 128256, 152064)] == [1030, 1018, 1017]
    assert [rank(128256, c) for c in (512, 640, 960)] == [479, 569, 738]
    assert rank(1000, 512) == 512 and rank(1401, 2048) > 2000
    for vocab, classes in ((128256, 2048), (128256, 512), (32000, 960)):  # the expected count reaching it
        q = 1.0 - (1.0 - rank(vocab, classes) / classes) ** (classes / vocab)
        assert abs(q * vocab - 1400) < 10, (vocab, classes, q * vocab)


@interpreted
def test_top_p_tile_on_split_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split rows (forced 2 and 7 slices) take the top-p tile too, its edge a class bound over the
    slices' folded classes (the records the split pass writes): the peaked rows finish on it,
    the flat ones take the row path, and the tokens are those of one program per row (the masses
    are summed over another tile, so log-probs agree to rounding)."""
    vocab = 8192
    g = torch.Generator().manual_seed(51)
    x = torch.cat([torch.randn(4, vocab, generator=g) * 3, torch.randn(2, vocab, generator=g) * 0.1,
                   edge_rows(vocab, seed=53)])
    n = x.shape[0]
    seed, offset = seeds(n, CPU, base=29)
    copies: dict[int, int] = {}
    top_p_tile = triton_sampling._top_p_tile

    def recorded_tile(row_ptr, *args):  # noqa: ANN001, ANN202
        out = top_p_tile(row_ptr, *args)
        if bool(out[2].handle.data.item()):
            copies[(int(row_ptr.handle.data.item()) - x.data_ptr()) // (vocab * 4)] = int(out[3].handle.data.item())
        return out

    monkeypatch.setattr(triton_sampling, "_top_p_tile", recorded_tile)
    passes = Launches(triton_sampling._split_pass_kernel)
    monkeypatch.setattr(triton_sampling, "_split_pass_kernel", passes)
    kw = dict(temperature=0.7, top_p=0.9, min_p=0.01)
    want = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True, backend="triton")
    assert passes.count == 0 and {0, 1, 2, 3} <= set(copies) and not {4, 5} & set(copies), copies
    for splits in (2, 7):
        copies.clear()
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
        got = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True, backend="triton")
        assert passes.count > 0, "the split path did not run"
        assert {0, 1, 2, 3} <= set(copies) and not {4, 5} & set(copies), (splits, copies)
        assert all(c <= 2048 for c in copies.values()), copies
        assert_same(got.tokens, want.tokens, what=f"splits={splits} tokens")
        assert_same(got.logprobs, want.logprobs, atol=2e-5, rtol=1e-5, what=f"splits={splits} logprobs")


@interpreted
def test_row_reads_of_the_early_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/triton_row_reads.py's counter on peaked rows (a confident decode step): the chain with
    top-k reads each row 2 times with the tiles (stats, copy) instead of 5, top-p alone 2 (stats,
    sum with the tile's copy) instead of 5, beam top-k with log-softmax 3 (stats, sum, logit copy)
    instead of 7."""
    from bench import triton_row_reads as reads

    vocab, rows = 3000, 2
    x = reads.logits("peaked", rows, vocab, seed=7)
    seed, offset = seeds(rows, CPU)
    calls = {
        "top-k": (lambda: S.filter_and_sample(x, temperature=0.7, top_k=20, top_p=0.9, seed=seed, offset=offset,
                                              backend="triton"), 5, 2),
        "top-p": (lambda: S.filter_and_sample(x, temperature=0.7, top_p=0.9, seed=seed, offset=offset,
                                              backend="triton"), 5, 2),
        "beam": (lambda: B.beam_topk(x, torch.zeros(rows), 1, 8, backend="triton"), 7, 3),
    }
    for name, (call, off, on) in calls.items():
        monkeypatch.setenv(_common.EARLY_TILE_ENV, "0")
        assert reads.count_reads(call, vocab, rows) == pytest.approx(off, abs=1e-3), name
        monkeypatch.setenv(_common.EARLY_TILE_ENV, "1")
        assert reads.count_reads(call, vocab, rows) == pytest.approx(on, abs=1e-3), name


@interpreted
def test_top_p_and_min_p_masks() -> None:
    for vocab in (1, 5, 2500):
        x = edge_rows(vocab, seed=3)
        n = x.shape[0]
        for p, m in ((0.0, 1), (0.3, 3), (0.9, 1), (1.0, 1), (torch.rand(n, dtype=torch.float64), 1)):
            got, want = both(S.top_p_mask_logits, x, p, min_tokens_to_keep=m)
            check_top_p(got, want, x, p, min_keep=m, what=f"top-p V={vocab} p={p} m={m}")
            got, want = both(S.min_p_mask_logits, x, p, min_tokens_to_keep=m)
            check_min_p(got, want, x, p, min_keep=m, what=f"min-p V={vocab} p={p} m={m}")
    got, want = both(S.top_p_mask_logits, x, 0.5, filter_value=-7.0)
    check_top_p(got, want, x, 0.5, filter_value=-7.0, what="top-p filter_value")
    got, want = both(S.min_p_mask_logits, x, 0.2, filter_value=-1.5)
    check_min_p(got, want, x, 0.2, filter_value=-1.5, what="min-p filter_value")


@interpreted
def test_multi_block_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows longer than a block, not a multiple of it (the GPU's case), on the interpreter."""
    monkeypatch.setattr(_common, "INTERPRET_BLOCK", 512)
    x = edge_rows(1300, seed=21).to(torch.bfloat16)
    assert_same(*both(S.greedy, x), what="greedy")
    assert_same(*both(S.top_k_mask_logits, x, 40), what="top-k")
    got, want = both(S.top_p_mask_logits, x, 0.8)
    check_top_p(got, want, x.float(), 0.8, what="top-p")
    got, want = both(S.min_p_mask_logits, x, 0.1)
    check_min_p(got, want, x.float(), 0.1, what="min-p")
    seed, offset = seeds(x.shape[0], CPU)
    out = S.filter_and_sample(x, temperature=0.9, top_k=300, seed=seed, offset=offset, return_filtered=True,
                              return_logprobs=True, backend="triton")
    ref = S.filter_and_sample(x, temperature=0.9, top_k=300, seed=seed, offset=offset, return_filtered=True,
                              return_logprobs=True, backend="torch")
    assert_same(out.filtered, ref.filtered, what="filtered")
    assert_same(out.tokens, ref.tokens, what="tokens")
    assert_same(out.logprobs, ref.logprobs, atol=2e-5, rtol=1e-6, what="logprobs")


@interpreted
def test_pivot_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """PYDECODE_TRITON_PIVOTS sets the pivots a pass of the top-p search (the row path's, on wide
    nuclei): 2, 4 (the default), 8 and 16 give the reference's nucleus on ordinary rows; other
    values are refused."""
    x = torch.randn(5, 3000, generator=torch.Generator().manual_seed(61)) * 0.5  # nuclei of ~2500
    for count in ("2", "4", "8", "16"):
        monkeypatch.setenv(_common.PIVOTS_ENV, count)
        for p in (0.5, 0.9):
            got, want = both(S.top_p_mask_logits, x, p)
            assert_same(got, want, what=f"top-p {p} with {count} pivots a pass")
    for bad in ("3", "32", "0", "four"):
        monkeypatch.setenv(_common.PIVOTS_ENV, bad)
        with pytest.raises(ValueError, match="PYDECODE_TRITON_PIVOTS must be"):
            S.top_p_mask_logits(x, 0.9, backend="triton")


@interpreted
def test_row_stages_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """PYDECODE_TRITON_STAGES sets the row loops' pipeline stages (1 to 8; 3 by default; read per call);
    other values are refused with the variable's name (the interpreter ignores the stages: the
    listings are checked in tests/test_bench_pass_cost.py)."""
    monkeypatch.delenv(_common.STAGES_ENV, raising=False)
    assert _common.row_stages() == _common.ROW_STAGES == 3
    for count in ("1", "4", "8"):
        monkeypatch.setenv(_common.STAGES_ENV, count)
        assert _common.row_stages() == int(count)
    for bad in ("0", "9", "three", "-1"):
        monkeypatch.setenv(_common.STAGES_ENV, bad)
        with pytest.raises(ValueError, match="PYDECODE_TRITON_STAGES must be"):
            S.filter_and_sample(torch.zeros(1, 8), top_k=2, seed=0, backend="triton")


@interpreted
def test_top_p_on_ordinary_rows_is_exact() -> None:
    """Away from exact ties, random rows give the reference's nucleus, for several p."""
    x = torch.randn(7, 3000) * 3
    for p in (0.1, 0.5, 0.9, 0.99):
        got, want = both(S.top_p_mask_logits, x, p)
        assert_same(got, want, what=f"p={p}")


@interpreted
def test_renorm_probs() -> None:
    probs = torch.softmax(edge_rows(600, seed=5), dim=-1)
    probs[6] = 0.0  # a row of zeros: stays zeros
    for k in (1, 7, 600, 0):
        got, want = both(S.top_k_renorm_probs, probs, k)
        assert_same(got, want, rtol=1e-6, what=f"top-k renorm k={k}")
    clean = torch.softmax(torch.randn(3, 600) * 3, dim=-1)
    for p in (0.2, 0.9, 1.0):
        got, want = both(S.top_p_renorm_probs, clean, p)
        assert_same(got, want, rtol=1e-6, what=f"top-p renorm p={p}")
    got, want = both(S.top_p_renorm_probs, probs, 0.7)
    assert_same(got[7], want[7], what="NaN row")  # a row containing NaN comes back NaN


@interpreted
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_filter_and_sample(dtype: torch.dtype) -> None:
    """Fused chain == reference warpers (up to the boundary rules), tokens == the contract's
    Gumbel-max over the kernel's own filtered row, logprobs == log_softmax at the token."""
    vocab = 1500
    x = edge_rows(vocab, seed=11).to(dtype)
    n = x.shape[0]
    seed, offset = seeds(n, CPU)
    settings = [
        dict(temperature=0.7, top_k=50, top_p=0.9, min_p=None, min_keep=1),
        dict(temperature=None, top_k=None, top_p=0.8, min_p=0.05, min_keep=1),
        dict(temperature=1.3, top_k=torch.randint(0, vocab + 1, (n,)), top_p=torch.rand(n, dtype=torch.float64),
             min_p=torch.rand(n, dtype=torch.float64) * 0.3, min_keep=3),
        dict(temperature=None, top_k=None, top_p=None, min_p=None, min_keep=1),
    ]
    for st in settings:
        args = dict(temperature=st["temperature"], top_k=st["top_k"], top_p=st["top_p"], min_p=st["min_p"],
                    min_tokens_to_keep=st["min_keep"])
        out = S.filter_and_sample(x, **args, seed=seed, offset=offset, return_logprobs=True, return_filtered=True,
                                  backend="triton")
        before_p, before_min_p, want = chain_reference(x, st["temperature"], st["top_k"], st["top_p"], st["min_p"],
                                                       st["min_keep"])
        # stage by stage: the triton masks applied one after another give the fused result exactly
        s = before_p
        if st["top_p"] is not None:
            s = S.top_p_mask_logits(before_p, st["top_p"], min_tokens_to_keep=st["min_keep"], backend="triton")
            check_top_p(s, S.top_p_mask_logits(before_p, st["top_p"], min_tokens_to_keep=st["min_keep"],
                                               backend="torch"), before_p, st["top_p"], min_keep=st["min_keep"])
        if st["min_p"] is not None:
            s2 = S.min_p_mask_logits(s, st["min_p"], min_tokens_to_keep=st["min_keep"], backend="triton")
            check_min_p(s2, S.min_p_mask_logits(s, st["min_p"], min_tokens_to_keep=st["min_keep"], backend="torch"),
                        s, st["min_p"], min_keep=st["min_keep"])
            s = s2
        assert_same(out.filtered, s, what=f"fused vs staged {st}")
        if st["top_p"] is None and st["min_p"] is None:
            assert_same(out.filtered, want, what="fused vs reference")
        assert_same(out.tokens, gumbel_tokens(out.filtered, seed, offset), what=f"tokens {st}")
        assert_same(out.logprobs, chosen_logprobs(out.filtered, out.tokens), atol=2e-5, rtol=1e-6,
                    what=f"logprobs {st}")
        # rows with nothing above -inf (all -inf) give token 0, logprob -inf
        assert int(out.tokens[6]) == 0 and float(out.logprobs[6]) == NEG_INF
        # without the filtered rows, top-k rows finish on the candidate tile: same tokens
        fast = S.filter_and_sample(x, **args, seed=seed, offset=offset, return_logprobs=True, backend="triton")
        assert_same(fast.tokens, out.tokens, what=f"tile tokens {st}")
        assert_same(fast.logprobs, out.logprobs, atol=2e-5, rtol=1e-6, what=f"tile logprobs {st}")


@interpreted
def test_same_tokens_as_torch_and_cpu_backends() -> None:
    """The randomness contract: same seed -> same tokens on every backend, whatever the row."""
    x = torch.randn(7, 2000) * 3
    seed, offset = seeds(7, CPU, base=99)
    backends = ["torch", "triton"] + (["cpu"] if _ext.cpu_module() is not None else [])
    for kw in (dict(), dict(temperature=0.7, top_k=40), dict(temperature=0.9, top_p=0.9), dict(min_p=0.1, top_k=200)):
        tokens = {b: S.filter_and_sample(x, **kw, seed=seed, offset=offset, backend=b).tokens for b in backends}
        for b in backends[1:]:
            assert_same(tokens[b], tokens["torch"], what=f"{b} {kw}")
    probs = torch.softmax(x, dim=-1)
    for kw in (dict(), dict(top_k=30), dict(top_p=0.5)):
        tokens = {b: S._sample_probs(probs, kw.get("top_k"), kw.get("top_p"), None, seed, offset, None, b)
                  for b in backends}
        for b in backends[1:]:
            assert_same(tokens[b], tokens["torch"], what=f"probs {b} {kw}")
    # a request's token does not depend on its row: permute rows with their seeds
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    a = S.filter_and_sample(x, top_k=40, seed=seed, offset=offset, backend="triton").tokens
    b = S.filter_and_sample(x[perm], top_k=40, seed=seed[perm], offset=offset[perm], backend="triton").tokens
    assert_same(b, a[perm])


@interpreted
def test_sampling_from_probs() -> None:
    edge = torch.softmax(edge_rows(300, seed=8), dim=-1)
    clean = torch.softmax(torch.randn(5, 300) * 2, dim=-1)  # top-p boundaries without ties
    for probs, settings in ((edge, (dict(), dict(top_k=5))), (clean, (dict(top_p=0.6), dict(top_k=20, top_p=0.9)))):
        seed, offset = seeds(probs.shape[0], CPU)
        for kw in settings:
            got = S._sample_probs(probs, kw.get("top_k"), kw.get("top_p"), None, seed, offset, None, "triton")
            want = S._sample_probs(probs, kw.get("top_k"), kw.get("top_p"), None, seed, offset, None, "torch")
            assert_same(got, want, what=str(kw))


@interpreted
def test_split_path_matches_one_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced split counts (rows spread over 2, 3, 7 programs, slices of several blocks or less than
    one) give bit for bit the tokens and log-probs of the one-program path, on edge rows, a row whose
    top entries crowd into the first slices, per-row top-k below and above the candidate tile (the
    latter finishing on the row path), top-p, min-p, min_tokens_to_keep, temperature tensors and
    probability inputs; greedy too. And the reference's tokens where the chain is exact (top-k only)."""
    monkeypatch.setattr(_common, "INTERPRET_BLOCK", 256)
    passes = Launches(triton_sampling._split_pass_kernel)
    greedy_parts = Launches(triton_sampling._greedy_split_kernel)
    monkeypatch.setattr(triton_sampling, "_split_pass_kernel", passes)
    monkeypatch.setattr(triton_sampling, "_greedy_split_kernel", greedy_parts)
    vocab = 1200
    # random, flat, tied, all -inf, NaN rows (tests/helpers.py), a scaled random one, and one whose top
    # 300 entries lie in the first columns (the first slices: their own class bounds decide)
    crowded = torch.randn(1, vocab) * 3
    crowded[0, :300] += 30.0
    x = torch.cat([edge_rows(vocab, seed=31)[[0, 2, 3, 6, 7]], torch.randn(1, vocab) * 3, crowded]).to(torch.bfloat16)
    n = x.shape[0]
    seed, offset = seeds(n, CPU, base=5)
    settings = [
        dict(temperature=0.7, top_k=50, top_p=0.9),
        # per-row k: the flat and tied rows (700, 40) exceed the tile (row path), k = V: no top-k
        # and the keep floor (min_tokens_to_keep 3: selected on the top-k tile, or by the row path's radix select)
        dict(temperature=torch.linspace(0.3, 2.0, n, dtype=torch.float64),
             top_k=torch.tensor([5, 700, 40, 1, 1200, 12, 200]), min_p=0.3, top_p=0.6, min_tokens_to_keep=3),
    ]
    probs = torch.softmax(x.float() * 0.5, dim=-1)

    def run(splits: int) -> list[torch.Tensor]:
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
        outs = []
        for kw in settings:
            out = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True, backend="triton")
            outs += [out.tokens, out.logprobs]
        outs.append(S._sample_probs(probs, 20, None, None, seed, offset, None, "triton"))
        outs.append(S.greedy(x, backend="triton"))
        return outs

    want = run(1)
    assert passes.count == 0 and greedy_parts.count == 0
    for splits in (2, 3, 7):
        got = run(splits)
        assert passes.count == len(settings) + 1 and greedy_parts.count == 1, "the split path did not run"
        passes.count = greedy_parts.count = 0
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, what=f"splits={splits} output {i}")
    ref = S._sample_probs(probs, 20, None, None, seed, offset, None, "torch")
    assert_same(want[-2], ref, what="top-k tokens from probabilities vs reference")
    assert_same(want[-1], S.greedy(x, backend="torch"), what="greedy vs reference")


@interpreted
def test_bad_split_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDECODE_TRITON_SPLITS", "two")
    with pytest.raises(ValueError, match="PYDECODE_TRITON_SPLITS must be a positive integer"):
        S.greedy(torch.randn(2, 50), backend="triton")


@interpreted
def test_split_count_per_op_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The automatic rule as on a 132-SM GPU: enough slices for ~2x the SMs, none for an op whose
    min_vocab the row does not reach (greedy: never; beam: below 65536); a forced count wins."""
    monkeypatch.setattr(_common, "interpreting", lambda x: False)
    monkeypatch.setattr(_common, "_sm_count", lambda index: 132)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("PYDECODE_TRITON_SPLITS", raising=False)
    x = torch.empty(0)
    assert _common.split_count(1, 128256, x) == 15  # 128256 // MIN_SLICE
    assert _common.split_count(8, 32000, x) == 3
    assert _common.split_count(132, 128256, x) == 1  # the rows fill the SMs
    assert _common.split_count(1, 128256, x, min_vocab=_common.NEVER) == 1
    assert _common.split_count(4, 32000, x, min_vocab=_common.SAMPLING_SPLIT_MIN_VOCAB) == 1
    assert _common.split_count(4, 128256, x, min_vocab=_common.SAMPLING_SPLIT_MIN_VOCAB) == 15
    assert _common.split_count(4, 152064, x, min_vocab=_common.BEAM_SPLIT_MIN_VOCAB) == 1
    monkeypatch.setattr(_common, "SPLITS_OVERRIDE", 7)
    assert _common.split_count(1, 128256, x, min_vocab=_common.NEVER) == 7


@interpreted
def test_persistent_programs_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 programs looping over 7 rows (row_programs' persistent launch) against one program per
    row: the chain on its tile path (top-k) and its row path (top-p, written rows), greedy, beam."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(7, 3000, generator=g) * 3
    x[2, ::5] = NEG_INF
    seed, offset = seeds(7, x.device)
    calls = {
        "tile": lambda: S.filter_and_sample(x, temperature=0.7, top_k=40, top_p=0.9, seed=seed, offset=offset,
                                            return_logprobs=True, backend="triton"),
        "row": lambda: S.filter_and_sample(x, top_p=0.8, min_p=0.02, seed=seed, offset=offset,
                                           return_logprobs=True, return_filtered=True, backend="triton"),
        "greedy": lambda: S.greedy(x, backend="triton"),
        "beam": lambda: B.beam_topk(x[:6], torch.zeros(6), 3, 4, apply_log_softmax=True, backend="triton"),
    }
    for name, call in calls.items():
        monkeypatch.setattr(_common, "PROGRAMS_OVERRIDE", None)
        want = call()
        monkeypatch.setattr(_common, "PROGRAMS_OVERRIDE", 3)
        got = call()
        for g_, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            if w is not None:
                assert_same(g_, w, what=f"3 persistent programs vs one per row: {name}")


@interpreted
@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_programs_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYDECODE_TRITON_PROGRAMS", value)
    with pytest.raises(ValueError, match="PYDECODE_TRITON_PROGRAMS must be a positive integer"):
        S.greedy(torch.randn(2, 50), backend="triton")


@interpreted
def test_torch_compile_traces_the_op() -> None:
    """filter_and_sample on the triton backend inside torch.compile(fullgraph=True)."""
    x = torch.randn(3, 500)
    seed, offset = seeds(3, CPU)

    def step(logits: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        out = S.filter_and_sample(logits, temperature=0.8, top_k=20, top_p=0.9, seed=seed, offset=offset,
                                  backend="triton")
        return out.tokens + 0

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert_same(compiled(x, seed, offset), step(x, seed, offset))


# --------------------------------------------------------------------------- GPU (compiled)
GPU_SHAPES = [(1, 152064), (7, 128256), (33, 32000), (64, 152064), (1024, 32000)]


def _gpu_rows(batch: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    if batch >= 7:  # edge rows mixed into the batch
        e = edge_rows(vocab, seed=seed)
        x[: min(batch, e.shape[0]) - 1] = e[: min(batch, e.shape[0]) - 1]
    return x.to(dtype).cuda()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,vocab", GPU_SHAPES)
def test_gpu_masks_triton(batch: int, vocab: int, dtype: torch.dtype) -> None:
    x = _gpu_rows(batch, vocab, dtype, seed=batch + vocab)
    before = x.float()
    got, want = both(S.apply_temperature, x, 0.7)
    assert_same(got, want, what="temperature")
    assert_same(*both(S.greedy, x), what="greedy")
    for k in (1, 50, vocab - 1, vocab, torch.randint(0, vocab + 1, (batch,), device="cuda")):
        # The reference runs on CPU: on the H200 (torch 2.11) CUDA torch.topk gave a k-th value that
        # kept the minimum of the bf16 NaN row (edge row 7) at k = V - 1, where NaN ranks highest and
        # exactly the minimum must go (test_top_k_nan_row_of_the_gpu_run; CPU torch.topk and
        # transformers' rule agree). The masks are exact either way: no arithmetic, only a threshold.
        got = S.top_k_mask_logits(x, k, backend="triton")
        want = S.top_k_mask_logits(x.cpu(), k.cpu() if isinstance(k, torch.Tensor) else k, backend="torch")
        assert_same(got, want, what=f"top-k {k}")
    for p in (0.0, 0.9, 1.0):
        got, want = both(S.top_p_mask_logits, x, p)
        check_top_p(got, want, before, p, eps=1e-4, what=f"top-p {p}")
        got, want = both(S.min_p_mask_logits, x, p)
        check_min_p(got, want, before, p, eps=1e-4, what=f"min-p {p}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,vocab", GPU_SHAPES)
def test_gpu_filter_and_sample_triton(batch: int, vocab: int, dtype: torch.dtype) -> None:
    x = _gpu_rows(batch, vocab, dtype, seed=7 * batch + vocab)
    seed, offset = seeds(batch, x.device)
    for kw in (dict(temperature=0.7, top_k=50, top_p=0.9), dict(top_p=0.9), dict(min_p=0.05, temperature=1.2), {}):
        out = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True, return_filtered=True,
                                  backend="triton")
        assert_same(out.tokens, gumbel_tokens(out.filtered, seed, offset), what=f"tokens {kw}")
        assert_same(out.logprobs, chosen_logprobs(out.filtered, out.tokens), atol=1e-4, rtol=1e-5,
                    what=f"logprobs {kw}")
        ref = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_filtered=True, backend="torch")
        if "top_p" not in kw and "min_p" not in kw:
            assert_same(out.filtered, ref.filtered, what=f"filtered {kw}")
            assert_same(out.tokens, ref.tokens, what=f"tokens vs reference {kw}")
        else:
            # boundary decisions aside, the same tokens as the reference
            differ = (out.tokens != ref.tokens).sum().item()
            assert differ <= max(1, batch // 16), f"{differ} of {batch} tokens differ from the reference {kw}"


@pytest.mark.gpu
@pytest.mark.parametrize("vocab", (32000, 128256, 152064))
@pytest.mark.parametrize("batch", (1, 2, 4, 8))
def test_gpu_split_path_triton(batch: int, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """At small batches the rows are spread over several programs (the default rule splits these
    shapes from vocab 65536 on; 3 slices forced at 32000): the same tokens and log-probs, bit for
    bit, as one program per row (and as 7 slices at batch 1), for the tile (top-k 50), a top-k
    above the tile (1000) and greedy."""
    x = _gpu_rows(batch, vocab, torch.bfloat16, seed=3 * batch + vocab)
    seed, offset = seeds(batch, x.device)
    auto = _common.split_count(batch, vocab, x, min_vocab=_common.SAMPLING_SPLIT_MIN_VOCAB)
    assert (auto > 1) == (vocab >= _common.SAMPLING_SPLIT_MIN_VOCAB)
    modes = (None if auto > 1 else 3, 1) + ((7,) if batch == 1 else ())
    # all with a temperature: one set of compiled variants (the GPU check's test step has a time limit)
    for kw in (dict(temperature=0.7, top_k=50, top_p=0.9), dict(temperature=1.1, top_k=20, min_p=0.1),
               dict(temperature=0.9, top_k=1000, top_p=0.95)):
        outs = {}
        for splits in modes:
            monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
            outs[splits] = S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True,
                                               backend="triton")
        for splits in modes:
            assert_same(outs[splits].tokens, outs[1].tokens, what=f"splits={splits} tokens {kw}")
            assert_same(outs[splits].logprobs, outs[1].logprobs, what=f"splits={splits} logprobs {kw}")
    # greedy measured slower split: it splits only when forced
    assert _common.split_count(batch, vocab, x, min_vocab=_common.NEVER) == 1
    for splits in (None, 7):
        monkeypatch.setattr(_common, "SPLITS_OVERRIDE", splits)
        assert_same(S.greedy(x, backend="triton"), S.greedy(x, backend="torch"), what=f"greedy, splits={splits}")


@pytest.mark.gpu
@pytest.mark.parametrize("batch", (1, 64, 256))
def test_gpu_early_tile_triton(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The early tiles against PYDECODE_TRITON_EARLY_TILE=0 at vocab 128256, split or not as the
    default rule says: the top-k select's gives the same tokens and log-probs bit for bit, and beam
    top-k's same candidates; the top-p tile the same tokens, log-probs to rounding."""
    x = _gpu_rows(batch, 128256, torch.bfloat16, seed=batch + 5)
    seed, offset = seeds(batch, x.device)
    top_k = (dict(temperature=0.7, top_k=50, top_p=0.9), dict(top_k=400, min_p=0.05))
    top_p = (dict(temperature=0.7, top_p=0.9), dict(top_p=0.95, min_p=0.02))
    outs = {}
    for early in ("0", "1"):
        monkeypatch.setenv(_common.EARLY_TILE_ENV, early)
        outs[early] = [S.filter_and_sample(x, **kw, seed=seed, offset=offset, return_logprobs=True, backend="triton")
                       for kw in top_k + top_p]
        outs[early].append(B.beam_topk(x, torch.zeros(batch, device=x.device), 1, 8, backend="triton"))
    for i, (got, want) in enumerate(zip(outs["1"], outs["0"])):
        bitwise = i < len(top_k) or i == len(outs["1"]) - 1
        for g_, w in zip(got, want):
            if bitwise or g_.dtype != torch.float32:
                assert_same(g_, w, what=f"early tile vs switched off, call {i}")
            else:
                assert_same(g_, w, atol=2e-5, rtol=1e-5, what=f"top-p tile log-probs vs switched off, call {i}")


@pytest.mark.gpu
def test_gpu_cross_backend_tokens() -> None:
    """Same seed -> same tokens on cuda (when it implements the op), triton, torch and cpu."""
    x = (torch.randn(33, 32000) * 3).cuda()
    seed, offset = seeds(33, x.device)
    kw = dict(temperature=0.8, top_k=100)
    want = S.filter_and_sample(x, **kw, seed=seed, offset=offset, backend="torch").tokens
    assert_same(S.filter_and_sample(x, **kw, seed=seed, offset=offset, backend="triton").tokens, want)
    if _ext.cpu_module() is not None:
        got = S.filter_and_sample(x.cpu(), **kw, seed=seed.cpu(), offset=offset.cpu(), backend="cpu").tokens
        assert_same(got, want.cpu())
    if "cuda" in _registry.registered_ops().get("filter_and_sample", ()) and not _ext.cuda_unavailable_reason():
        assert_same(S.filter_and_sample(x, **kw, seed=seed, offset=offset, backend="cuda").tokens, want)


@pytest.mark.gpu
def test_gpu_graph_capture_triton() -> None:
    """A decode step captured in a CUDA graph reads new seeds/offsets/logits on every replay."""
    x = (torch.randn(8, 32000) * 3).cuda()
    seed, offset = seeds(8, x.device)
    temperature = torch.full((8,), 0.8, dtype=torch.float64, device="cuda")
    top_k = torch.full((8,), 50, dtype=torch.int64, device="cuda")
    top_p = torch.full((8,), 0.9, dtype=torch.float64, device="cuda")

    def step() -> torch.Tensor:
        return S.filter_and_sample(x, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, offset=offset,
                                   backend="triton").tokens

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        tokens = step()
    for i in range(3):
        x.copy_(torch.randn(8, 32000, device="cuda") * 3)
        offset.add_(1)
        graph.replay()
        torch.cuda.synchronize()
        assert_same(tokens, step(), what=f"replay {i}")


@pytest.mark.gpu
def test_gpu_torch_compile_triton() -> None:
    x = (torch.randn(4, 32000) * 3).cuda()
    seed, offset = seeds(4, x.device)

    def step(logits: torch.Tensor) -> torch.Tensor:
        return S.filter_and_sample(logits * 1.0, top_k=20, seed=seed, offset=offset, backend="triton").tokens

    assert_same(torch.compile(step, fullgraph=True)(x), step(x))


@pytest.mark.gpu
def test_gpu_sampled_distribution_triton() -> None:
    """20000 draws (one per offset) of one row follow the renormalised top-k/top-p probabilities:
    total variation below 0.02 (the expected TV of 20000 draws over ~12 outcomes is ~0.01)."""
    draws = 20000
    logits = (torch.randn(1, 5000, generator=torch.Generator().manual_seed(3)) * 2).cuda()
    logits[0, :12] += 8  # a dozen likely tokens
    x = logits.expand(draws, -1)
    seed = torch.full((draws,), 42, dtype=torch.int64, device="cuda")
    offset = torch.arange(draws, dtype=torch.int64, device="cuda")
    out = S.filter_and_sample(x, top_k=12, top_p=0.95, seed=seed, offset=offset, return_filtered=True,
                              backend="triton")
    probs = torch.softmax(out.filtered[0], dim=-1).double().cpu()
    freq = torch.bincount(out.tokens.cpu(), minlength=5000).double() / draws
    assert float(freq[probs == 0].sum()) == 0.0, "a filtered-out token was sampled"
    tv = 0.5 * float((freq - probs).abs().sum())
    assert tv < 0.02, f"total variation {tv:.3f}"
